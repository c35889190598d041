package audit

import (
	"encoding/json"
	"testing"
)

// FuzzJSONString: whatever a statement holds, its JSON string decodes back
// to the text, with invalid UTF-8 as U+FFFD (as encoding/json writes it).
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "SELECT 1", "a\"b\\c\nd\re\tf\x00g\x1fh\x7f", "ünïcödé \xff\xfe end", "\xe2\x82"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: %s is not a JSON string: %v", s, out, err)
		}
		want, _ := json.Marshal(s)
		var w string
		json.Unmarshal(want, &w)
		if got != w {
			t.Fatalf("%q: decodes to %q, want %q", s, got, w)
		}
	})
}
