package confkey

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type creds struct {
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

type section struct {
	Token   string  `yaml:"token"`
	Users   []creds `yaml:"users"`
	Note    string  `yaml:"note"` // not a secret: ${X} stays
	Skipped string  `yaml:"-"`
}

type top struct {
	Inline     `yaml:",inline"`
	Service    creds              `yaml:"service_user"`
	Section    *section           `yaml:"section"`
	ByName     map[string]creds   `yaml:"by_name"`
	AdminToken string             `yaml:"admin_token"`
	TokenFile  string             `yaml:"admin_token_file"`
	Nil        *section           `yaml:"nil"`
	Counts     map[string]int     `yaml:"counts"`
	Nested     map[string][]creds `yaml:"nested"`
}

type Inline struct {
	ListenToken string `yaml:"listen_token"`
}

func TestResolveSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw := write("pw", "from-file\n")
	tok := write("tok", "token-from-file")
	twoLines := write("two", "a\nb\n")
	t.Setenv("SLUICE_TEST_PW", "from-env")
	t.Setenv("SLUICE_TEST_EMPTY", "")

	c := &top{
		Inline:  Inline{ListenToken: "${SLUICE_TEST_PW}"},
		Service: creds{User: "m", PasswordFile: pw},
		Section: &section{Token: "pre-${SLUICE_TEST_PW}-post", Note: "${SLUICE_TEST_PW}", Skipped: "${NOPE}",
			Users: []creds{{Password: "plain"}, {Password: "${SLUICE_TEST_EMPTY}"}}},
		ByName:    map[string]creds{"a": {Password: "${SLUICE_TEST_PW}"}},
		TokenFile: tok,
		Nested:    map[string][]creds{"x": {{PasswordFile: pw}}},
		Counts:    map[string]int{"a": 1},
	}
	if err := ResolveSecrets(c); err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string][2]string{
		"inline listen_token":      {c.ListenToken, "from-env"},
		"service_user.password":    {c.Service.Password, "from-file"},
		"section.token":            {c.Section.Token, "pre-from-env-post"},
		"section.note (no secret)": {c.Section.Note, "${SLUICE_TEST_PW}"},
		"a yaml:- field":           {c.Section.Skipped, "${NOPE}"},
		"users[0]":                 {c.Section.Users[0].Password, "plain"},
		"users[1] (set but empty)": {c.Section.Users[1].Password, ""},
		"by_name.a":                {c.ByName["a"].Password, "from-env"},
		"admin_token":              {c.AdminToken, "token-from-file"},
		"nested.x[0]":              {c.Nested["x"][0].Password, "from-file"},
	} {
		if got[0] != got[1] {
			t.Errorf("%s: %q, want %q", what, got[0], got[1])
		}
	}

	for _, bad := range []struct {
		c    any
		want string
	}{
		{&top{Service: creds{Password: "${SLUICE_TEST_UNSET}"}}, "service_user.password: refers to ${SLUICE_TEST_UNSET}, which is not set"},
		{&top{Section: &section{Users: []creds{{}, {PasswordFile: filepath.Join(dir, "missing")}}}}, "section.users[1].password_file: cannot read it"},
		{&top{Service: creds{Password: "x", PasswordFile: pw}}, "service_user.password: given twice"},
		{&top{Service: creds{PasswordFile: twoLines}}, "service_user.password_file: " + twoLines + " must hold the secret on one line"},
	} {
		err := ResolveSecrets(bad.c)
		if err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("%v; want %q", err, bad.want)
		}
	}
}
