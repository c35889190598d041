package audit

import (
	"slices"
	"strings"
)

// Redacted stands for a withheld value: in a record's query, a literal
// becomes the string '<redacted>'; a parameter becomes "<redacted>".
const Redacted = "<redacted>"

// What a record's "redacted" list says fired: "column:" and the rule of
// genlog.redact_columns as configured, "pattern:" and the pattern's name,
// or RedactedUnparsed.
const (
	RedactedColumn   = "column:"
	RedactedPattern  = "pattern:"
	RedactedUnparsed = "unparsed: all literals"
)

// detectors are genlog.redact_patterns' built-in patterns.
var detectors = map[string]func(string) bool{
	"card_number": IsCardNumber,
	"email":       IsEmail,
}

// RedactPatternNames are the patterns genlog.redact_patterns may name.
func RedactPatternNames() []string {
	names := make([]string, 0, len(detectors))
	for n := range detectors {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Redaction is the selective redaction a genlog section asks for
// (redact_columns, redact_patterns); nil when it asks for none. Its owner
// (the proxy's session) applies it to a Query before LogQuery.
type Redaction struct {
	Columns  []string
	Patterns []string
	match    []func(string) bool
}

func newRedaction(c *Config) *Redaction {
	if len(c.RedactColumns) == 0 && len(c.RedactPatterns) == 0 || c.redactLiterals() {
		return nil
	}
	r := &Redaction{Columns: c.RedactColumns, Patterns: c.RedactPatterns}
	for _, p := range c.RedactPatterns {
		r.match = append(r.match, detectors[p])
	}
	return r
}

// Match returns the first pattern value matches, or "".
func (r *Redaction) Match(value string) string {
	for i, m := range r.match {
		if m(value) {
			return r.Patterns[i]
		}
	}
	return ""
}

// IsCardNumber reports whether s holds a payment card number: 13 to 19
// digits, single spaces or dashes between them allowed, whose Luhn check
// digit is right. The number is a whole run of digits and separators, or
// groups of one ("order 12 4111-1111-1111-1111" holds one).
func IsCardNumber(s string) bool {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		// A run of digit groups; try each group start with each group end.
		j := i
		var starts []int
		for j < len(s) && isDigit(s[j]) {
			if j == i || !isDigit(s[j-1]) {
				starts = append(starts, j)
			}
			j++
			if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
				j++
			}
		}
		for _, a := range starts {
			for b := j; b > a; b-- {
				if (b == j || !isDigit(s[b])) && luhn(s[a:b]) {
					return true
				}
			}
		}
		i = j
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// luhn: s is 13 to 19 digits (and separators) passing the Luhn check.
func luhn(s string) bool {
	digits, sum := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		if !isDigit(s[i]) {
			continue
		}
		d := int(s[i] - '0')
		if digits%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		digits++
	}
	return digits >= 13 && digits <= 19 && sum%10 == 0
}

// IsEmail reports whether s holds an e-mail address, local@domain.tld.
func IsEmail(s string) bool {
	for at := strings.IndexByte(s, '@'); at >= 0; {
		l := at
		for l > 0 && (isAlnum(s[l-1]) || strings.IndexByte("._%+-", s[l-1]) >= 0) {
			l--
		}
		r := at + 1
		for r < len(s) && (isAlnum(s[r]) || s[r] == '.' || s[r] == '-') {
			r++
		}
		domain := strings.TrimRight(s[at+1:r], ".")
		if dot := strings.LastIndexByte(domain, '.'); l < at && dot > 0 && len(domain)-dot > 2 {
			return true
		}
		next := strings.IndexByte(s[at+1:], '@')
		if next < 0 {
			break
		}
		at += 1 + next
	}
	return false
}

func isAlnum(c byte) bool {
	return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z')
}
