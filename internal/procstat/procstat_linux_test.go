package procstat

import (
	"os"
	"testing"
	"time"
)

// The test process itself: CPU it burns shows, in ticks, and its memory
// is between a megabyte and what a machine has.
func TestSelf(t *testing.T) {
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	after := before
	for start := time.Now(); after == before && time.Since(start) < time.Minute; {
		if after, err = CPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after <= before || (after-before)%(10*time.Millisecond) != 0 {
		t.Fatalf("CPU %v then %v while spinning: want it to grow by ticks of 10 ms", before, after)
	}
	now, peak, err := RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if now < 1<<20 || peak < now || peak > 64<<30 {
		t.Fatalf("RSS %d, peak %d", now, peak)
	}
	if _, _, err := RSS(-1); err == nil {
		t.Fatal("no error for pid -1")
	}
}

// A sleep is a voluntary switch: sleeping many times shows.
func TestSwitches(t *testing.T) {
	v0, _, err := Switches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		time.Sleep(time.Millisecond)
	}
	v1, _, err := Switches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if v1 <= v0 {
		t.Fatalf("voluntary switches %d then %d after 20 sleeps", v0, v1)
	}
}
