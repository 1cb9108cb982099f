package verify

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
)

func ptr[T any](v T) *T { return &v }

// so and sj are scalers as the live objects of the tests would give them.
func so() Scaler {
	return Scaler{Kind: ScaleModeScaledObject, Namespace: "edw", Name: "aqs-consumer", PollingInterval: 30 * time.Second,
		CooldownPeriod: 300 * time.Second, MaxReplicaCount: 10, QueueLength: 5, QueueName: "q"}
}

func sj() Scaler {
	return Scaler{Kind: ScaleModeScaledJob, Namespace: "edw", Name: "aqs-consumer-job", PollingInterval: 30 * time.Second,
		MaxReplicaCount: 10, QueueLength: 5, QueueName: "q"}
}

func at(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestAtMinimumVerdict(t *testing.T) {
	withIdle := so()
	withIdle.MinReplicaCount, withIdle.IdleReplicaCount = 1, ptr(int32(0))
	withActivation := so()
	withActivation.ActivationQueueLength = 2
	sjMin1 := sj()
	sjMin1.MinReplicaCount = 1
	otherQueue := so()
	otherQueue.QueueName = "other"
	active := JobState{Name: "j1", UID: "u1"}
	done := JobState{Name: "j0", UID: "u0", Succeeded: true}
	cases := []struct {
		name   string
		s      Scaler
		before Observation
		depth  int
		ok     bool
		want   string
	}{
		{"ScaledObject at 0", so(), Observation{Replicas: 0}, 0, true, "Deployment at 0 replicas (at rest: 0)"},
		{"ScaledObject scaled", so(), Observation{Replicas: 1}, 0, false, "the Deployment is at 1 replicas, not at rest (0)"},
		{"idleReplicaCount is the rest", withIdle, Observation{Replicas: 0}, 0, true, "at rest: 0"},
		{"at min but not idle", withIdle, Observation{Replicas: 1}, 0, false, "not at rest (0)"},
		{"queue at activation", withActivation, Observation{}, 2, true, "queue holds 2 messages (activationQueueLength 2)"},
		{"queue beyond activation", withActivation, Observation{}, 3, false, "the queue holds 3 messages, more than activationQueueLength 2"},
		{"queue beyond default activation", so(), Observation{}, 1, false, "more than activationQueueLength 0"},
		{"ScaledJob idle (finished jobs do not count)", sj(), Observation{Jobs: []JobState{done}}, 0, true, "0 active Jobs"},
		{"ScaledJob busy", sj(), Observation{Jobs: []JobState{active, done}}, 0, false, "1 Jobs of ScaledJob aqs-consumer-job are still active"},
		{"ScaledJob at its minimum", sjMin1, Observation{Jobs: []JobState{active}}, 0, true, "1 active Jobs (minReplicaCount 1)"},
		{"trigger on another queue", otherQueue, Observation{}, 0, false, `watches queue "other", not the stack's queue "q"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := atMinimumVerdict(tc.s, "q", tc.before, tc.depth)
			assert.True(t, v.done)
			assert.Equal(t, tc.ok, v.ok, v.evidence)
			assert.Contains(t, v.evidence, tc.want)
		})
	}
}

func TestScaledUpVerdict(t *testing.T) {
	slack := 60 * time.Second // limit 90 s
	rest := func(s float64) Observation { return Observation{At: at(s), Replicas: 0} }
	up := func(s float64, n int32) Observation { return Observation{At: at(s), Replicas: n} }
	cases := []struct {
		name    string
		s       Scaler
		samples []Observation
		before  map[string]bool
		final   bool
		done    bool
		ok      bool
		want    string
	}{
		{"in time", so(), []Observation{rest(0), rest(5), up(6, 1), up(21, 3)}, nil, false, true, true,
			"replicas above 0 6s after the burst's first message (limit 90s = pollingInterval 30s + slack 60s); replicas 0@0s 1@6s 3@21s"},
		{"exactly at the limit", so(), []Observation{rest(0), up(90, 1)}, nil, false, true, true, "90s after"},
		{"just after the limit", so(), []Observation{rest(0), up(90.1, 1)}, nil, false, true, false, "only 90.1s after the burst's first message, later than the limit 90s"},
		{"not yet", so(), []Observation{rest(0), rest(50)}, nil, false, false, false, ""},
		{"never", so(), []Observation{rest(0), rest(900)}, nil, true, true, false, "no scale-up within 900s of the burst's first message"},
		{"a sample that failed is not a scale-up", so(), []Observation{rest(0), {At: at(3), Replicas: 5, Err: "boom"}}, nil, true, true, false, "last cluster read error: boom"},
		{"above a non-zero rest", func() Scaler { s := so(); s.MinReplicaCount = 1; return s }(),
			[]Observation{up(0, 1), up(4, 1), up(8, 2)}, nil, false, true, true, "replicas above 1 8s after"},
		{"ScaledJob: a new Job", sj(), []Observation{{At: 0, Jobs: []JobState{{UID: "old", Succeeded: true}}}, {At: at(7), Jobs: []JobState{{UID: "old", Succeeded: true}, {UID: "new"}}}},
			map[string]bool{"old": true}, false, true, true, "first Job 7s after the burst's first message"},
		{"ScaledJob: only Jobs from before", sj(), []Observation{{At: 0, Jobs: []JobState{{UID: "old"}}}, {At: at(100), Jobs: []JobState{{UID: "old"}}}},
			map[string]bool{"old": true}, true, true, false, "no scale-up"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := scaledUpVerdict(tc.s, slack, tc.samples, tc.before, tc.final)
			assert.Equal(t, tc.done, v.done)
			assert.Equal(t, tc.ok, v.ok, v.evidence)
			assert.Contains(t, v.evidence, tc.want)
		})
	}
	// The check's seconds are when the sample showed the scale-up, not when verify looked.
	v := scaledUpVerdict(so(), slack, cases[0].samples, nil, false)
	assert.True(t, v.timed)
	assert.Equal(t, at(6), v.at)
}

func TestTimelineAndJobStats(t *testing.T) {
	samples := []Observation{
		{At: 0, Replicas: 0},
		{At: at(1), Replicas: 0},
		{At: at(2), Err: "x", Replicas: 9},
		{At: at(3), Replicas: 2},
		{At: at(4.04), Replicas: 2},
		{At: at(9.96), Replicas: 0},
	}
	assert.Equal(t, []ReplicaPoint{{0, 0}, {3, 2}, {10, 0}}, timeline(ScaleModeScaledObject, samples))
	assert.Equal(t, "0@0s 2@3s 0@10s", timelineString(timeline(ScaleModeScaledObject, samples)))

	jobs := []Observation{
		{At: 0, Jobs: []JobState{{UID: "old", Succeeded: true}}},
		{At: at(1), Jobs: []JobState{{UID: "old", Succeeded: true}, {UID: "a"}, {UID: "b"}}},
		{At: at(2), Jobs: []JobState{{UID: "old", Succeeded: true}, {UID: "a"}, {UID: "b"}, {UID: "c"}, {UID: "d"}}},
		{At: at(3), Jobs: []JobState{{UID: "a", Succeeded: true}, {UID: "b", Failed: true}, {UID: "c"}}},
	}
	st := jobStatsOf(jobs, map[string]bool{"old": true})
	assert.Equal(t, jobStats{Created: 4, MaxActive: 4, Succeeded: 1, Failed: 1, Active: 1, Gone: 1}, st)
	assert.Equal(t, "jobs created 4, max active 4, succeeded 1, failed 1, still active 1, deleted before finishing 1", st.String())
	assert.Equal(t, []ReplicaPoint{{0, 0}, {1, 2}, {2, 4}, {3, 1}}, timeline(ScaleModeScaledJob, jobs))
}

func TestNodesVerdict(t *testing.T) {
	before := Observation{Pods: []PodState{{Name: "old", UID: "old", Node: "aks-system-0"}}}
	cases := []struct {
		name    string
		before  Observation
		samples []Observation
		final   bool
		done    bool
		ok      bool
		want    string
	}{
		{"pending, keep waiting", before, []Observation{{At: at(1), Pods: []PodState{{UID: "p1"}}}}, false, false, false, ""},
		{"pending at the deadline", before, []Observation{{At: at(1), Pods: []PodState{{UID: "p1"}}}}, true, true, false,
			"no consumer pod of this burst was scheduled (1 created, all pending); NodePool app had 0 nodes before the burst, none appeared after it"},
		{"NAP node then pods on it", before, []Observation{
			{At: at(1), Pods: []PodState{{Name: "p1", UID: "p1"}}},
			{At: at(63), PoolNodes: []string{"aks-app-1"}, Pods: []PodState{{Name: "p1", UID: "p1"}}},
			{At: at(70), PoolNodes: []string{"aks-app-1"}, Pods: []PodState{{Name: "p1", UID: "p1", Node: "aks-app-1"}, {Name: "p2", UID: "p2", Node: "aks-app-1"}}},
		}, false, true, true, "NodePool app had 0 nodes before the burst, 1 appeared after it (the first, aks-app-1, 63s after the burst's first message); 2 consumer pods of this burst on 1 pool nodes (aks-app-1), 1 of those nodes new since the burst; the first pod scheduled 70s after the burst's first message"},
		{"nodes already there", Observation{PoolNodes: []string{"aks-app-1", "aks-app-2"}}, []Observation{
			{At: at(2), PoolNodes: []string{"aks-app-1", "aks-app-2"}, Pods: []PodState{{Name: "p1", UID: "p1", Node: "aks-app-2"}}},
		}, false, true, true, "NodePool app had 2 nodes before the burst, none appeared after it; 1 consumer pods of this burst on 1 pool nodes (aks-app-2), 0 of those nodes new since the burst"},
		{"only the nodes that appeared after the burst count as new", Observation{PoolNodes: []string{"aks-app-1"}}, []Observation{
			{At: at(2), PoolNodes: []string{"aks-app-1"}, Pods: []PodState{{Name: "p1", UID: "p1", Node: "aks-app-1"}}},
			{At: at(40), PoolNodes: []string{"aks-app-1", "aks-app-2"}, Pods: []PodState{{Name: "p1", UID: "p1", Node: "aks-app-1"}, {Name: "p2", UID: "p2", Node: "aks-app-2"}}},
		}, false, true, true, "NodePool app had 1 nodes before the burst, 1 appeared after it (the first, aks-app-2, 40s after the burst's first message); 2 consumer pods of this burst on 2 pool nodes (aks-app-1, aks-app-2), 1 of those nodes new since the burst"},
		{"a burst pod outside the pool fails at once", before, []Observation{
			{At: at(2), PoolNodes: []string{"aks-app-1"}, Pods: []PodState{{Name: "p1", UID: "p1", Node: "aks-app-1"}, {Name: "p2", UID: "p2", Node: "aks-system-0"}}},
		}, false, true, false, "consumer pods of this burst run outside NodePool app (nodes without karpenter.sh/nodepool=app): p2 on aks-system-0"},
		{"a pod from before the burst does not count", before, []Observation{
			{At: at(2), PoolNodes: []string{"aks-app-1"}, Pods: []PodState{{Name: "old", UID: "old", Node: "aks-system-0"}, {Name: "p1", UID: "p1", Node: "aks-app-1"}}},
		}, false, true, true, "1 consumer pods of this burst on 1 pool nodes"},
		{"a pool node deleted later still counts", before, []Observation{
			{At: at(2), PoolNodes: []string{"aks-app-1"}, Pods: []PodState{{Name: "p1", UID: "p1"}}},
			{At: at(3), Pods: []PodState{{Name: "p1", UID: "p1", Node: "aks-app-1"}}},
		}, false, true, true, "on 1 pool nodes (aks-app-1)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := nodesVerdict("app", tc.before, tc.samples, tc.final)
			assert.Equal(t, tc.done, v.done)
			assert.Equal(t, tc.ok, v.ok, v.evidence)
			assert.Contains(t, v.evidence, tc.want)
			if tc.ok {
				assert.True(t, v.timed, "a pass is timed by the first pod scheduled on the pool")
			}
		})
	}
}

func TestEntityKeysAreTheConsumers(t *testing.T) {
	// The consumer's own path: parse the producer's message, NewEntity keys it.
	text, err := message.NewWithID("0b6f4c5e-8d1a-4f3e-9c2b-5a7d1e0f3c4b", "verify-1 #1", time.Now()).Encode()
	require.NoError(t, err)
	p, err := message.Parse(text)
	require.NoError(t, err)
	e := message.NewEntity("queue-message-id", 1, p, time.Now())
	pk, rk := entityKeys("0b6f4c5e-8d1a-4f3e-9c2b-5a7d1e0f3c4b")
	assert.Equal(t, e.PartitionKey, pk)
	assert.Equal(t, e.RowKey, rk)
}

func TestStoredOnceVerdict(t *testing.T) {
	sent := []sentMsg{{ID: "a", Text: "verify-x #1"}, {ID: "b", Text: "verify-x #2"}}
	ent := func(id, text string) message.Entity {
		pk, rk := entityKeys(id)
		return message.Entity{PartitionKey: pk, RowKey: rk, Data: text, ID: id}
	}
	both := map[string]message.Entity{"a": ent("a", "verify-x #1"), "b": ent("b", "verify-x #2")}
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	stamp := func(e message.Entity, sent, stored time.Duration) message.Entity {
		e.SrcStamp, e.DateStamp = message.FormatStamp(t0.Add(sent)), message.FormatStamp(t0.Add(stored))
		return e
	}
	// b was sent 0.2 s after a, and stored first.
	stamped := map[string]message.Entity{"a": stamp(both["a"], 0, 2300*time.Millisecond), "b": stamp(both["b"], 200*time.Millisecond, 500*time.Millisecond)}
	tagged := []message.Entity{both["a"], both["b"]}
	dup := ent("a", "verify-x #1")
	dup.PartitionKey, dup.RowKey = message.Keys("queue-message-id")
	cases := []struct {
		name    string
		found   map[string]message.Entity
		tagged  []message.Entity
		queried bool
		final   bool
		done    bool
		ok      bool
		want    string
	}{
		{"all once", both, tagged, true, false, true, true, "2/2 messages stored at the keys their id maps to; the run tag is on exactly 2 entities"},
		{"all once, with the consumer's stamps", stamped, tagged, true, false, true, true,
			"the run tag is on exactly 2 entities; first stored 0.5s after the burst's first message, last 2.3s"},
		{"one missing, keep waiting", map[string]message.Entity{"a": both["a"]}, nil, false, false, false, false, ""},
		{"one missing at the deadline", map[string]message.Entity{"a": both["a"]}, nil, false, true, true, false, "1 of 2 messages have no entity at the keys their id maps to: b"},
		{"found, tag query pending", both, nil, false, false, false, false, ""},
		{"a second copy under other keys", both, append(tagged, dup), true, false, true, false,
			"the run tag is on 3 entities for 2 messages: stored more than once, at keys not derived from their id: " + dup.PartitionKey + "/" + dup.RowKey},
		{"fewer tagged than sent", both, tagged[:1], true, false, true, false, "the run tag is on 1 entities for 2 messages"},
		{"the entity holds another text", map[string]message.Entity{"a": ent("a", "verify-x #1"), "b": ent("b", "verify-x #9")}, tagged, true, false, true, false,
			`message 2 (id b): entity`},
		{"the entity holds another id", map[string]message.Entity{"a": ent("a", "verify-x #1"), "b": ent("z", "verify-x #2")}, tagged, true, false, true, false,
			`id "z"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := storedOnceVerdict(sent, tc.found, tc.tagged, tc.queried, tc.final)
			assert.Equal(t, tc.done, v.done)
			assert.Equal(t, tc.ok, v.ok, v.evidence)
			assert.Contains(t, v.evidence, tc.want)
		})
	}
}

func TestDrainedVerdict(t *testing.T) {
	sentAt := at(0.5)
	samples := []Observation{
		{At: 0, Depth: 0}, // before the burst reached the queue: not a drain
		{At: at(1), Depth: 100},
		{At: at(2), Depth: -1, DepthErr: "timeout"},
		{At: at(12.34), Depth: 3},
	}
	assert.Equal(t, verdict{}, drainedVerdict(samples, sentAt, false))
	v := drainedVerdict(samples, sentAt, true)
	assert.True(t, v.done)
	assert.False(t, v.ok)
	assert.Equal(t, "the queue still holds 3 messages (approximate count) 12.3s after the burst's first message", v.evidence)

	samples = append(samples, Observation{At: at(14), Depth: 0}, Observation{At: at(15), Depth: 0})
	v = drainedVerdict(samples, sentAt, false)
	assert.Equal(t, verdict{done: true, ok: true, evidence: "approximate message count 0, 14s after the burst's first message", timed: true, at: at(14)}, v)

	v = drainedVerdict([]Observation{{At: at(1), Depth: -1, DepthErr: "403"}}, sentAt, true)
	assert.False(t, v.ok)
	assert.Equal(t, "the queue's count could not be read after the burst (last error: 403)", v.evidence)
}

func TestPoisonVerdict(t *testing.T) {
	cases := []struct {
		name          string
		before, after poisonCount
		ours          []string
		ok            bool
		want          string
	}{
		{"no poison queue", poisonCount{}, poisonCount{}, nil, true, "poison queue: absent before, absent after; none of this burst among the 0 peeked"},
		{"unchanged", poisonCount{4, true}, poisonCount{4, true}, nil, true, "4 messages before, 4 messages after"},
		{"shrank (someone drained it)", poisonCount{4, true}, poisonCount{1, true}, nil, true, "4 messages before, 1 messages after"},
		{"ours among the peeked", poisonCount{0, true}, poisonCount{1, true}, []string{`"verify-x #7" (id a)`}, false, `the poison queue holds 1 messages of this burst: "verify-x #7" (id a)`},
		{"grew, none peeked", poisonCount{40, true}, poisonCount{41, true}, nil, false, "the poison queue grew from 40 messages to 41 messages during the run"},
		{"created during the run", poisonCount{}, poisonCount{1, true}, nil, false, "grew from absent to 1 messages"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peeked := min(tc.after.Count, 32) // what a peek of the poison queue sees
			v := poisonVerdict(tc.before, tc.after, peeked, tc.ours)
			assert.True(t, v.done)
			assert.Equal(t, tc.ok, v.ok, v.evidence)
			assert.Contains(t, v.evidence, tc.want)
		})
	}
}

func TestBackToMinimumVerdict(t *testing.T) {
	slack := 60 * time.Second
	drain := at(100)
	soSamples := func(last int32) []Observation {
		return []Observation{{At: 0}, {At: at(5), Replicas: 3}, {At: at(100), Replicas: 3}, {At: at(400), Replicas: 0}, {At: at(410), Replicas: 2}, {At: at(420), Replicas: last}}
	}
	jobSamples := func(last ...JobState) []Observation {
		return []Observation{
			{At: 0, Jobs: []JobState{{UID: "old", Succeeded: true}}},
			{At: at(5), Jobs: []JobState{{UID: "a"}, {UID: "b"}}},
			{At: at(110), Jobs: last},
			{At: at(120), Jobs: last},
		}
	}
	before := map[string]bool{"old": true}
	cases := []struct {
		name    string
		s       Scaler
		samples []Observation
		final   bool
		done    bool
		ok      bool
		at      time.Duration
		want    string
	}{
		{"back to 0 (timed from the last time it came to rest)", so(), soSamples(0), false, true, true, at(320),
			"replicas back to 0 320s after the drain (limit 390s = cooldownPeriod 300s + pollingInterval 30s + slack 60s); replicas 0@0s 3@5s 0@400s 2@410s 0@420s"},
		{"still up, keep waiting", so(), soSamples(1), false, false, false, 0, ""},
		{"still up at the deadline", so(), soSamples(1), true, true, false, at(320), "replicas still 1, not 0, 320s after the drain"},
		{"a failed sample is not the latest", so(), append(soSamples(1), Observation{At: at(421), Err: "x"}), true, true, false, at(320), "replicas still 1"},
		{"samples before the drain do not count", so(), soSamples(0)[:3], true, true, false, 0, "replicas still 3, not 0, 0s after the drain"},
		{"no sample since the drain", so(), soSamples(0)[:2], true, true, false, 0, "no cluster sample could be read after the drain"},
		{"idle count", func() Scaler { s := so(); s.MinReplicaCount, s.IdleReplicaCount = 2, ptr(int32(0)); return s }(), soSamples(0), false, true, true, at(320), "back to 0"},
		{"jobs all succeeded", sj(), jobSamples(JobState{UID: "a", Succeeded: true}, JobState{UID: "b", Succeeded: true}), false, true, true, at(10),
			"every Job of the burst finished 10s after the drain (limit 90s = pollingInterval 30s + slack 60s); jobs created 2, max active 2, succeeded 2, failed 0"},
		{"a job still active", sj(), jobSamples(JobState{UID: "a", Succeeded: true}, JobState{UID: "b"}), false, false, false, 0, ""},
		{"a job still active at the deadline", sj(), jobSamples(JobState{UID: "a", Succeeded: true}, JobState{UID: "b"}), true, true, false, at(20), "1 Jobs still active 20s after the drain"},
		{"a job failed", sj(), jobSamples(JobState{UID: "a", Succeeded: true}, JobState{UID: "b", Failed: true}), false, true, false, at(10), "1 Jobs of the burst failed; jobs created 2, max active 2, succeeded 1, failed 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := backToMinimumVerdict(tc.s, slack, tc.samples, before, drain, tc.final)
			assert.Equal(t, tc.done, v.done)
			assert.Equal(t, tc.ok, v.ok, v.evidence)
			assert.Contains(t, v.evidence, tc.want)
			if tc.done && v.evidence != "no cluster sample could be read after the drain" {
				assert.True(t, v.timed)
				assert.Equal(t, tc.at, v.at)
			}
		})
	}
}

func TestTagFilter(t *testing.T) {
	assert.Equal(t, "data ge 'verify-ab12 #' and data lt 'verify-ab12 $'", tagFilter("verify-ab12"))
	assert.Equal(t, "data ge 'it''s #' and data lt 'it''s $'", tagFilter("it's"))
}

func TestReportSummaryAndLine(t *testing.T) {
	rep := Report{Stack: "dev", ScaleMode: ScaleModeScaledObject, Burst: 100, Checks: []Check{
		{Name: CheckAtMinimumBefore, OK: true, Evidence: "fine"},
		{Name: CheckScaledUp, OK: true, Seconds: 6.2, Evidence: "quick"},
		{Name: CheckBackToMinimum, Skipped: true, Evidence: "-skip-scale-down"},
	}}
	assert.True(t, rep.OK())
	assert.Equal(t, "verify: ok: 2 checks hold on stack dev (ScaledObject, burst of 100), 1 skipped", rep.Summary())
	assert.Equal(t, "verify: scaled-up: ok (6.2s): quick", rep.Checks[1].Line())
	assert.Equal(t, "verify: back-to-minimum: skipped (0s): -skip-scale-down", rep.Checks[2].Line())
	rep.Checks = append(rep.Checks, Check{Name: CheckStoredOnce, Evidence: "missing"}, Check{Name: CheckDrained, Evidence: "full"})
	assert.False(t, rep.OK())
	assert.Equal(t, "verify: FAILED: stored-once: missing", rep.Summary())
	assert.Equal(t, "verify: stored-once: FAILED (0s): missing", rep.Checks[3].Line())
	assert.False(t, Report{}.OK(), "a report without checks is not a pass")
	j, err := Report{}.JSON()
	require.NoError(t, err)
	assert.Equal(t, `{"stack":"","scaleMode":"","burst":0,"checks":[],"replicasTimeline":[],"jobsCreated":0,"maxActiveJobs":0,"entitiesDeleted":0}`, j)
}
