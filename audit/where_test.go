package audit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// genlogRecords returns the JSON records Genlog writes for a few
// statements and logins of the users app and bob.
func genlogRecords(t *testing.T) []string {
	t.Helper()
	sink := &memSink{}
	g := NewGenlog(Config{Topic: "t", Proxy: "p1", MaxQueryBytes: 1024}, sink)
	app := &Session{ID: 7, User: "app", Client: "127.0.0.1:5000", DB: "app"}
	bob := &Session{ID: 8, User: "bob", Client: "127.0.0.1:5001", DB: "app"}
	start := time.Unix(1700000000, 0)
	g.LogQuery(app, &Query{Start: start, Duration: 1500 * time.Millisecond, Command: "COM_QUERY",
		Text: "SELECT * FROM orders WHERE a==1", Fingerprint: "SELECT * FROM orders WHERE a==?", Digest: 0xabc,
		Server: "db2", Route: "replica", Rows: 3})
	g.LogQuery(bob, &Query{Start: start, Duration: 2 * time.Millisecond, Command: "COM_QUERY",
		Text: "SELECT 1 WHERE x && y", Fingerprint: "SELECT ? WHERE x && y", Digest: 0xdef,
		Server: "db1", Route: "primary", GTID: "0-1-42", Affected: 1})
	g.LogAuth(app, &Auth{Time: start, OK: false, ErrorCode: 1045, Plugin: "mysql_native_password"})
	if len(sink.values) != 3 {
		t.Fatalf("%d records", len(sink.values))
	}
	return sink.values
}

func TestWhere(t *testing.T) {
	recs := genlogRecords(t)
	// Which of the three records (app's query, bob's query, app's failed
	// login) each expression matches.
	cases := map[string]string{
		``:                                    "111",
		`   `:                                 "111",
		`user=="app"`:                         "101",
		`user=="app" && duration_us>1000000`:  "100",
		`user=="app" && duration_us>2000000`:  "000",
		`user!="root"`:                        "111",
		`query~"orders"`:                      "100",
		`query ~ "orders" && type == "query"`: "100",
		`error_code==0 && type=="query"`:      "110",
		`error_code!=0`:                       "001",
		`missing=="x"`:                        "000",
		`missing!="x"`:                        "111",
		`duration_us<=1500000 && duration_us>=1500000`: "100",
		`duration_us<1500000 && type=="query"`:         "010",
		// The old splitter's false negatives.
		`query~"a==1"`:                  "100",
		`user=="app" || user=="bob"`:    "111",
		`query~"&&"`:                    "010",
		`query~"x && y" || query~"~"`:   "010",
		`!(user=="app")`:                "010",
		`user in ["bob", "carol"]`:      "010",
		`query matches "^SELECT [0-9]"`: "010",
		`query contains "orders"`:       "100",
		`type=="auth" && !ok`:           "001",
		`ok`:                            "000",
		// A field absent from a record: no match there, no error.
		`gtid=="0-1-42"`:     "010",
		`gtid < "x"`:         "010",
		`gtid=="x"`:          "000",
		`gtid~"0-1-"`:        "010",
		`affected > 0`:       "010",
		`params[0] == 1`:     "000",
		`user > 3`:           "000",
		`$env.user == "bob"`: "010",
		// ~ is text containment of any value, as it was: numbers by
		// their JSON text, a missing field as "".
		`duration_us ~ "1500"`: "100",
		`session ~ 8`:          "010",
		`gtid ~ ""`:            "111",
		`ok ~ "false"`:         "001",
	}
	for src, want := range cases {
		w, err := ParseWhere(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		got := ""
		for _, r := range recs {
			if w.Match([]byte(r)) {
				got += "1"
			} else {
				got += "0"
			}
		}
		if got != want {
			t.Errorf("%q matched %s, want %s", src, got, want)
		}
	}
}

func TestWhereErrorsNamePosition(t *testing.T) {
	for src, want := range map[string]string{
		`user==`:                        "unexpected token EOF (1:6)",
		`user=="app" &&`:                "(1:14)",
		`user=="app" && (x`:             "(1:17)",
		`query~"a" && user=="x" &&& ok`: "(1:26)",
		`duration_us >= "1" +`:          "(1:20)",
		`query~`:                        "(1:6)",
		`nonsense(`:                     "(1:9)",
		`user == "app" @`:               "(1:15)",
		"user == \"app\" &&\n  ) ":      "(2:3)",
		`query contains 1`:              "mismatched types",
		`"text"`:                        "expected bool",
	} {
		_, err := ParseWhere(src)
		if err == nil {
			t.Errorf("%q parsed", src)
			continue
		}
		if !strings.HasPrefix(err.Error(), "--where: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want --where: and %s", src, err, want)
		}
	}
	_, err := ParseWhere(`query ~ "x" &&& ok`)
	var we *WhereError
	if !errors.As(err, &we) || we.Line != 1 || we.Column != 15 || !strings.Contains(we.Snippet, "query ~ \"x\" &&& ok") {
		t.Fatalf("%#v", err)
	}
}
