package audit

import "testing"

func TestWhere(t *testing.T) {
	rec := []byte(`{"type":"query","user":"app","duration_us":1500000,"query":"SELECT * FROM orders","error_code":0}`)
	cases := map[string]bool{
		``:                                   true,
		`user=="app"`:                        true,
		`user=="app" && duration_us>1000000`: true,
		`user=="app" && duration_us>2000000`: false,
		`user!="root"`:                       true,
		`query~"orders"`:                     true,
		`error_code==0 && type=="query"`:     true,
		`error_code!=0`:                      false,
		`missing=="x"`:                       false,
		`duration_us<=1500000 && duration_us>=1500000`: true,
	}
	for expr, want := range cases {
		w, err := ParseWhere(expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		if got := w.Match(rec); got != want {
			t.Errorf("%q: %v, want %v", expr, got, want)
		}
	}
	for _, bad := range []string{`user`, `duration_us>"x"`, `==3`} {
		if _, err := ParseWhere(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
