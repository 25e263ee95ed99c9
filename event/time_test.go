package event

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestAppendTimeIsTimeFormat(t *testing.T) {
	const layout = `"2006-01-02T15:04:05.000000000Z07:00"`
	r := rand.New(rand.NewPCG(1, 2))
	vals := []int64{0, 1, -1, 1e9 - 1, -1e9, 951782400e9, 1795000000123456789, math.MaxInt64, math.MinInt64 + 1e9}
	for i := 0; i < 200000; i++ {
		vals = append(vals, r.Int64()-r.Int64()/2)
	}
	for _, ns := range vals {
		want := time.Unix(0, ns).UTC().Format(layout)
		if got := string(AppendTime(nil, ns)); got != want {
			t.Fatalf("AppendTime(%d) = %s, want %s", ns, got, want)
		}
		back, err := ParseTime(want[1 : len(want)-1])
		if err != nil || back != ns {
			t.Fatalf("ParseTime(%s) = %d, %v; want %d", want, back, err, ns)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = AppendTime(make([]byte, 0, 64), 1795000000123456789) }); n > 1 {
		t.Errorf("%v allocations", n)
	}
}

func BenchmarkAppendTime(b *testing.B) {
	buf := make([]byte, 0, 64)
	for i := 0; i < b.N; i++ {
		buf = AppendTime(buf[:0], 1795000000123456789+int64(i))
	}
}
