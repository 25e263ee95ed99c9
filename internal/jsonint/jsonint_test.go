package jsonint

import (
	"encoding/json"
	"math"
	"testing"
)

func TestAppend(t *testing.T) {
	for _, c := range []struct {
		v    uint64
		want string
	}{{0, "0"}, {MaxSafe, "9007199254740991"}, {MaxSafe + 1, `"9007199254740992"`}, {math.MaxUint64, `"18446744073709551615"`}} {
		if got := string(AppendUint(nil, c.v)); got != c.want {
			t.Errorf("AppendUint(%d) = %s, want %s", c.v, got, c.want)
		}
		if back, err := ParseUint([]byte(c.want)); err != nil || back != c.v {
			t.Errorf("ParseUint(%s) = %d, %v", c.want, back, err)
		}
	}
	for _, c := range []struct {
		v    int64
		want string
	}{{-1, "-1"}, {-MaxSafe, "-9007199254740991"}, {-MaxSafe - 1, `"-9007199254740992"`}, {math.MinInt64, `"-9223372036854775808"`}, {math.MaxInt64, `"9223372036854775807"`}} {
		if got := string(AppendInt(nil, c.v)); got != c.want {
			t.Errorf("AppendInt(%d) = %s, want %s", c.v, got, c.want)
		}
		if back, err := ParseInt([]byte(c.want)); err != nil || back != c.v {
			t.Errorf("ParseInt(%s) = %d, %v", c.want, back, err)
		}
	}
	// Every number written is one a double holds exactly.
	for _, v := range []uint64{MaxSafe, MaxSafe - 1, 1 << 52} {
		var f float64
		if err := json.Unmarshal(AppendUint(nil, v), &f); err != nil || uint64(f) != v {
			t.Errorf("%d read as a double: %v (%v)", v, f, err)
		}
	}
	var u struct{ A, B Uint }
	if err := json.Unmarshal([]byte(`{"A":5,"B":"18446744073709551615"}`), &u); err != nil || u.A != 5 || u.B != math.MaxUint64 {
		t.Errorf("Uint: %+v %v", u, err)
	}
	if err := json.Unmarshal([]byte(`{"A":"x"}`), &u); err == nil {
		t.Error("Uint read a non-number")
	}
}
