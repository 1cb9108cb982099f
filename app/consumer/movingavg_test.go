package consumer

import (
	"testing"
	"time"
)

// The first samples are averaged as they come (a start far from the truth is
// forgotten at once), later ones weigh 1/8.
func TestMovingAvgStartsFromTheMeanOfItsFirstSamples(t *testing.T) {
	var m movingAvg
	if got := m.load(); got != 0 {
		t.Fatalf("before any sample: %s, want 0", got)
	}
	m.observe(10 * time.Millisecond)
	if got := m.load(); got != 10*time.Millisecond {
		t.Fatalf("after one sample of 10ms: %s", got)
	}
	for range 7 {
		m.observe(100 * time.Millisecond)
	}
	// The mean of 10 ms and seven of 100 ms. (Weighing each 1/8 from the
	// second sample on would give 64.6 ms: the first one still counted for 40%.)
	want := (10*time.Millisecond + 7*100*time.Millisecond) / 8
	if got := m.load(); absDur(got-want) > time.Microsecond {
		t.Fatalf("after 8 samples: %s, want their mean %s", got, want)
	}
	m.observe(time.Duration(want) + 800*time.Millisecond)
	if got, w := m.load(), want+100*time.Millisecond; absDur(got-w) > time.Microsecond {
		t.Fatalf("the 9th sample weighs 1/8: %s, want %s", got, w)
	}
}

// The read-ahead follows the observed latencies from the first samples: a
// dequeue 8 times as slow as a slot request gives the most dequeues ahead.
func TestReadAheadFollowsTheFirstLatencies(t *testing.T) {
	c := &Consumer{cfg: Config{Concurrency: 16, BatchSize: 32}}
	if got := c.latencyRatio(); got != 1 {
		t.Fatalf("ratio before samples %.2f, want 1", got)
	}
	c.slotTime.observe(2 * time.Millisecond)
	c.slotTime.observe(30 * time.Millisecond) // the slots' mean: 16 ms
	c.dequeueTime.observe(128 * time.Millisecond)
	if got := c.latencyRatio(); got != 8 {
		t.Fatalf("ratio %.2f after a 16 ms slot mean and a 128 ms dequeue, want 8", got)
	}
	if got, want := c.readAhead(), int64(16*(3+8)); got != want {
		t.Fatalf("readAhead %d, want %d", got, want)
	}
	if got := c.dequeuesAhead(); got != 4 {
		t.Fatalf("dequeuesAhead %d, want 4", got)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
