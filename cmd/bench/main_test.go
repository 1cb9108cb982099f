package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aks-edw/aks-edw/harness/azproxy"
)

func defaults() options {
	return options{
		messages: 400, rounds: 3, batch: 32, concurrency: 8,
		rtts: []time.Duration{0, 10 * time.Millisecond}, replicas: []int{1, 2, 4}, replicaRTT: 10 * time.Millisecond,
		replicaMessages: 400, replicaConcurrency: 1, replicaRounds: 3, replicaBatch: 8,
		throttleRate: 120, throttleMessages: 2000, timeout: time.Minute,
	}
}

// Each bad setting is refused with an error that names its flag.
func TestValidateNamesTheBadFlag(t *testing.T) {
	if err := defaults().validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*options)
		want string
	}{
		{"messages", func(o *options) { o.messages = 0 }, "-messages 0"},
		{"rounds", func(o *options) { o.rounds = 0 }, "-rounds 0"},
		{"concurrency", func(o *options) { o.concurrency = 0 }, "-concurrency 0"},
		{"replica-messages", func(o *options) { o.replicaMessages = -1 }, "-replica-messages -1"},
		{"replica-concurrency", func(o *options) { o.replicaConcurrency = 0 }, "-replica-concurrency 0"},
		{"replica-rounds", func(o *options) { o.replicaRounds = 0 }, "-replica-rounds 0"},
		{"throttle-messages", func(o *options) { o.throttleMessages = 0 }, "-throttle-messages 0"},
		{"batch", func(o *options) { o.batch = 33 }, "batch 33"},
		{"replica-rtt", func(o *options) { o.replicaRTT = 5 * time.Millisecond }, "-replica-rtt 5ms is not among -rtt"},
		{"replicas", func(o *options) { o.replicas = []int{2, 4} }, "-replicas [2 4] must start with 1"},
		{"throttle-rate", func(o *options) { o.throttleRate = -1 }, "-throttle-rate -1"},
		{"rtt", func(o *options) { o.rtts = append(o.rtts, -time.Millisecond) }, "rtt -1ms is negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := defaults()
			c.edit(&o)
			err := o.validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// The bound, the slots in use and the emulator's busy share follow Little's
// law from the proxy's counts over the steady window.
func TestSampleArithmetic(t *testing.T) {
	counts := func(deletes, dequeues int64, busyDeletes, busyDequeues time.Duration) azproxy.Counts {
		c := azproxy.Counts{Requests: map[string]int64{}, Throttled: map[string]int64{}, Busy: map[string]time.Duration{}}
		c.Requests["queue/delete"], c.Busy["queue/delete"] = deletes, busyDeletes
		c.Requests["queue/dequeue"], c.Busy["queue/dequeue"] = dequeues, busyDequeues
		return c
	}
	// 400 messages, 400 deletes of 20 ms each (dequeues do not count: they run
	// beside the slots), over a 2 s window: 4 deletes in flight on average.
	s := sample{
		messages: 400, counts: counts(400, 13, 8*time.Second, 2*time.Second),
		steadyMessages: 320, steady: 2 * time.Second, steadyCounts: counts(400, 13, 8*time.Second, 2*time.Second),
		steadyQueueCPU: 1500 * time.Millisecond,
	}
	if got := s.inFlight(); got != 4 {
		t.Errorf("in flight %.2f, want 4", got)
	}
	if got := s.meanRequest(); got != 20*time.Millisecond {
		t.Errorf("mean request %s, want 20ms", got)
	}
	// 8 slots / (20 ms × 1 slot request per message) = 400 msg/s.
	if got := s.bound(8); got != 400 {
		t.Errorf("bound %.1f, want 400", got)
	}
	if got := s.rate(); got != 160 {
		t.Errorf("rate %.1f, want 160", got)
	}
	if got := s.queueBusy(); got != 0.75 {
		t.Errorf("emulator queue busy %.2f, want 0.75", got)
	}
}

// The meter reads a live process's CPU time.
func TestMeterReadsProcessCPU(t *testing.T) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if (meter{queuePid: os.Getpid()}).queueCPU() > 0 {
			return
		}
	}
	t.Fatal("no CPU time read for this process after 2 s of work")
}

func TestMeterOfNoProcessReadsZero(t *testing.T) {
	if got := (meter{queuePid: -1}).queueCPU(); got != 0 {
		t.Fatalf("CPU of pid -1: %s, want 0", got)
	}
}
