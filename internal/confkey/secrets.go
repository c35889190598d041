package confkey

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
)

// Secrets: every password and token key of sluice.yaml (a string field
// whose yaml key is password or token, or ends in _password or _token)
// takes its value three ways:
//
//	password: s3cret                          # in the file
//	password: ${DB_PASSWORD}                  # from the environment
//	password_file: /etc/sluice/db.password    # from a file (one line)
//
// A package gets the _file form by declaring the sibling field (yaml key
// "<key>_file") next to the secret; ResolveSecrets fills the secret in.

// IsSecretKey reports whether a yaml key names a secret.
func IsSecretKey(key string) bool {
	return key == "password" || key == "token" || strings.HasSuffix(key, "_password") || strings.HasSuffix(key, "_token")
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ResolveSecrets walks v (a pointer to a config struct) and, for each
// secret, reads its _file sibling into it or expands ${VAR} references
// in it. Its errors name the key (a dotted path from v).
func ResolveSecrets(v any) error {
	return resolve(reflect.ValueOf(v), "")
}

func resolve(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return resolve(v.Elem(), path)
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := resolve(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			if err := resolve(e, join(path, fmt.Sprint(k.Interface()))); err != nil {
				return err
			}
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		t := v.Type()
		files := map[string]reflect.Value{}
		for i := 0; i < t.NumField(); i++ {
			if key, ok := yamlKey(t.Field(i)); ok && strings.HasSuffix(key, "_file") {
				files[strings.TrimSuffix(key, "_file")] = v.Field(i)
			}
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			key, ok := yamlKey(f)
			if !ok {
				continue
			}
			fv := v.Field(i)
			if f.Anonymous || key == "" { // inline: the same level of the file
				if err := resolve(fv, path); err != nil {
					return err
				}
				continue
			}
			if fv.Kind() == reflect.String && IsSecretKey(key) {
				if err := resolveSecret(fv, files[key], join(path, key)); err != nil {
					return err
				}
				continue
			}
			if err := resolve(fv, join(path, key)); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolveSecret sets secret from its file (when the _file key is set) or
// expands the environment references in it.
func resolveSecret(secret, file reflect.Value, key string) error {
	if file.IsValid() && file.String() != "" {
		if secret.String() != "" {
			return Errorf(key, "given twice: set %s or %s_file, not both", key[strings.LastIndexByte(key, '.')+1:], key[strings.LastIndexByte(key, '.')+1:])
		}
		b, err := os.ReadFile(file.String())
		if err != nil {
			return Errorf(key+"_file", "cannot read it: %v", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" || strings.ContainsAny(s, "\r\n") {
			return Errorf(key+"_file", "%s must hold the secret on one line", file.String())
		}
		secret.SetString(s)
		return nil
	}
	var missing string
	out := envRef.ReplaceAllStringFunc(secret.String(), func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		val, ok := os.LookupEnv(name)
		if !ok && missing == "" {
			missing = name
		}
		return val
	})
	if missing != "" {
		return Errorf(key, "refers to ${%s}, which is not set in Sluice's environment; set it, or give the secret another way", missing)
	}
	secret.SetString(out)
	return nil
}

// yamlKey is a field's key in the file: its yaml tag's name ("" for
// ",inline"), ok false for fields the file does not have ("-").
func yamlKey(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "-" {
		return "", false
	}
	if strings.Contains(opts, "inline") {
		return "", true
	}
	if name == "" {
		return strings.ToLower(f.Name), true
	}
	return name, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
