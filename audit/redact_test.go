package audit

import (
	"errors"
	"testing"

	"github.com/sluice-proxy/sluice/internal/confkey"
)

func TestIsCardNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"4111111111111111":                true, // Visa test number
		"4111 1111 1111 1111":             true, // grouped
		"4111-1111-1111-1111":             true, // dashed
		"5500000000000004":                true, // Mastercard
		"378282246310005":                 true, // Amex, 15 digits
		"6011111111111117":                true, // Discover
		"4222222222222":                   true, // 13 digits
		"order 12 4111-1111-1111-1111 ok": true,
		"4111111111111112":                false, // Luhn fails
		"4111 1111 1111 1112":             false,
		"411111111111":                    false, // 12 digits
		"41111111111111111111":            false, // 20 digits, and fails as a whole
		"4111--1111-1111-1111":            false, // a double separator breaks the number
		"":                                false,
		"hello":                           false,
		"1234":                            false,
		"0000000000000000000000000":       false, // a run of 25 digits is no card number
	} {
		if got := IsCardNumber(s); got != want {
			t.Errorf("IsCardNumber(%q) = %v", s, got)
		}
	}
}

func TestIsEmail(t *testing.T) {
	for s, want := range map[string]bool{
		"alice@example.com":                     true,
		"mail bob.smith+x@mail.example.org now": true,
		"a@b.co":                                true,
		"@example.com":                          false,
		"alice@localhost":                       false,
		"alice@example.c":                       false,
		"no at sign":                            false,
		"user@host.":                            false,
	} {
		if got := IsEmail(s); got != want {
			t.Errorf("IsEmail(%q) = %v", s, got)
		}
	}
}

func TestRedactConfig(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		key string
	}{
		{Config{RedactColumns: []string{"cards.pan", "shop.users.email"}, RedactPatterns: []string{"card_number", "email"}}, ""},
		{Config{RedactColumns: []string{"cards.pan", "pan"}}, "redact_columns[1]"},
		{Config{RedactColumns: []string{"a.b.c.d"}}, "redact_columns[0]"},
		{Config{RedactColumns: []string{"shop..pan"}}, "redact_columns[0]"},
		{Config{RedactPatterns: []string{"email", "ssn"}}, "redact_patterns[1]"},
	} {
		cfg := c.cfg.WithDefaults()
		err := cfg.Validate()
		var ke *confkey.Error
		switch {
		case c.key == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.key != "" && (!errors.As(err, &ke) || ke.Key != c.key):
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.key)
		}
	}
	if r := newRedaction(&Config{RedactPatterns: []string{"email"}}); r == nil || r.Match("x a@b.cd") != "email" || r.Match("4111111111111111") != "" {
		t.Fatalf("redaction %+v", r)
	}
	if newRedaction(&Config{}) != nil || newRedaction(&Config{Redact: "literals", RedactPatterns: []string{"email"}}) != nil {
		t.Fatal("a redaction where none is needed")
	}
}
