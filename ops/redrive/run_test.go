package redrive

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/message"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/itest"
)

var suite *itest.Suite

func TestMain(m *testing.M) { itest.Main(m, &suite) }

// fixture is a private Azurite with a work queue and its poison queue.
type fixture struct {
	c    *storage.Clients
	work string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureIn(t, suite.NewEnv(t))
}

// newFixtureIn is a fixture with queues of its own in env's Azurite.
func newFixtureIn(t *testing.T, env *itest.Env) *fixture {
	t.Helper()
	work, _ := suite.Names(t)
	c := env.Clients(t, work, "")
	require.NoError(t, storage.EnsureQueue(itest.Ctx(t, 10*time.Second), c.Poison))
	return &fixture{c: c, work: work}
}

// put enqueues texts on q as they are (never expiring, as the consumer does).
func put(t *testing.T, q *azqueue.QueueClient, texts ...string) {
	t.Helper()
	ttl := int32(-1)
	for _, text := range texts {
		_, err := q.EnqueueMessage(itest.Ctx(t, 10*time.Second), text, &azqueue.EnqueueMessageOptions{TimeToLive: &ttl})
		require.NoError(t, err)
	}
}

// all is the texts of q's visible messages, sorted, read without changing anything (a peek: the
// tests keep their queues under the 32 messages it returns at most).
func all(t *testing.T, q *azqueue.QueueClient) []string {
	t.Helper()
	texts, err := storage.PeekTexts(itest.Ctx(t, 10*time.Second), q)
	require.NoError(t, err)
	require.Less(t, len(texts), 32, "more than a peek can see")
	sort.Strings(texts)
	return texts
}

// depth is q's message count (Azurite's is exact).
func depth(t *testing.T, q *azqueue.QueueClient) int {
	t.Helper()
	n, err := Depth(itest.Ctx(t, 10*time.Second), q, "queue")
	require.NoError(t, err)
	return n
}

// poisonIDs is the record ids (or texts, for the ones that are not records) of texts.
func poisonIDs(texts []string) []string {
	var ids []string
	for _, text := range texts {
		if e := Classify("", time.Time{}, text, ""); e.Record.MessageID != "" {
			ids = append(ids, e.Record.MessageID)
		} else {
			ids = append(ids, "text:"+text[:min(len(text), 20)])
		}
	}
	sort.Strings(ids)
	return ids
}

func (f *fixture) options(move bool) Options {
	return Options{
		Work: f.work, Poison: f.c.Poison, PoisonName: f.work + storage.PoisonSuffix,
		QueueNamed: func(name string) Queue { return f.c.Service.NewQueueClient(name) },
		Move:       move, Hold: time.Minute,
	}
}

// seed puts six records on the poison queue: two per reason, a day apart, and returns the
// original bodies by id.
func (f *fixture) seed(t *testing.T) map[string]string {
	t.Helper()
	bodies := map[string]string{}
	reasons := []message.Decision{message.PoisonMalformed, message.PoisonOverDelivered, message.PoisonRejected}
	for i := range 6 {
		id := fmt.Sprintf("m%d", i)
		body := message.NewWithID("id-"+id, fmt.Sprintf("body %d", i), t0).Msg
		if i%2 == 0 {
			text, err := message.NewWithID("id-"+id, fmt.Sprintf("body %d", i), t0).Encode()
			require.NoError(t, err)
			body = text
		}
		bodies[id] = body
		rec, err := message.NewPoisonRecord(f.work, id, 6, body, reasons[i%3], "detail", t0.Add(time.Duration(i)*24*time.Hour)).Encode()
		require.NoError(t, err)
		put(t, f.c.Poison, rec)
	}
	return bodies
}

func TestReportCountsAndLeavesEverythingVisible(t *testing.T) {
	f := newFixture(t)
	f.seed(t)
	put(t, f.c.Poison, "a stray text", strings.Repeat("L", message.MaxQueueMessageBytes-10))
	res, err := Run(itest.Ctx(t, time.Minute), f.options(false))
	require.NoError(t, err)
	r := res.Report
	assert.Equal(t, 8, r.Read)
	assert.Equal(t, 8, r.Approximate)
	assert.Equal(t, []ReasonCount{
		{Reason: ReasonMalformed, Count: 2, Oldest: "2026-12-01 10:00:00.000000", Newest: "2026-12-04 10:00:00.000000", SampleIDs: []string{"m0", "m3"}},
		{Reason: ReasonOverDelivered, Count: 2, Oldest: "2026-12-02 10:00:00.000000", Newest: "2026-12-05 10:00:00.000000", SampleIDs: []string{"m1", "m4"}},
		{Reason: ReasonRejected, Count: 2, Oldest: "2026-12-03 10:00:00.000000", Newest: "2026-12-06 10:00:00.000000", SampleIDs: []string{"m2", "m5"}},
		{Reason: ReasonTooLarge, Count: 1, Oldest: r.Reasons[3].Oldest, Newest: r.Reasons[3].Newest, SampleIDs: r.Reasons[3].SampleIDs},
	}, r.Reasons)
	assert.Equal(t, []SourceCount{{Queue: f.work, Count: 7}}, r.Sources)
	require.Len(t, r.Unparseable, 1)
	assert.Contains(t, r.Unparseable[0].Why, "neither a poison record")
	assert.Equal(t, fmt.Sprintf("poison queue %s-poison: 8 messages: malformed 2, over_delivered 2, rejected 2, too_large 1, unparseable 1", f.work), r.Line())
	assert.Equal(t, 0, res.Summary.Moved)
	assert.Equal(t, 7, res.Summary.Selected)
	// Nothing moved, nothing hidden: every message is visible again at once (not after the hold).
	assert.Len(t, all(t, f.c.Poison), 8)
	assert.Empty(t, all(t, f.c.Queue))
}

func TestEachSelectorMovesExactlyItsMessages(t *testing.T) {
	cases := []struct {
		name string
		sel  Selector
		lim  int
		want []string
	}{
		{"no selector: every record", Selector{}, 0, []string{"m0", "m1", "m2", "m3", "m4", "m5"}},
		{"-reason rejected", Selector{Reasons: []string{ReasonRejected}}, 0, []string{"m2", "m5"}},
		{"-reason malformed,over_delivered", Selector{Reasons: []string{ReasonMalformed, ReasonOverDelivered}}, 0, []string{"m0", "m1", "m3", "m4"}},
		{"-since", Selector{Since: t0.Add(3 * 24 * time.Hour)}, 0, []string{"m3", "m4", "m5"}},
		{"-until", Selector{Until: t0.Add(24 * time.Hour)}, 0, []string{"m0"}},
		{"-since and -until", Selector{Since: t0.Add(24 * time.Hour), Until: t0.Add(3 * 24 * time.Hour)}, 0, []string{"m1", "m2"}},
		{"-id", Selector{IDs: map[string]bool{"m4": true, "m1": true, "nope": true}}, 0, []string{"m1", "m4"}},
		{"-limit", Selector{Reasons: []string{ReasonMalformed, ReasonRejected}}, 3, nil}, // any 3 of m0 m2 m3 m5
	}
	env := suite.NewEnv(t) // one Azurite; each case has queues of its own
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixtureIn(t, env)
			bodies := f.seed(t)
			o := f.options(true)
			o.Select, o.Limit = c.sel, c.lim
			res, err := Run(itest.Ctx(t, time.Minute), o)
			require.NoError(t, err)
			moved := all(t, f.c.Queue)
			left := poisonIDs(all(t, f.c.Poison))
			if c.lim > 0 {
				assert.Equal(t, c.lim, res.Summary.Selected)
				assert.Equal(t, c.lim, res.Summary.Moved)
				assert.Len(t, moved, c.lim)
				assert.Len(t, left, 6-c.lim)
				return
			}
			var want, wantLeft []string
			for id, body := range bodies {
				if contains(c.want, id) {
					want = append(want, body)
				} else {
					wantLeft = append(wantLeft, id)
				}
			}
			sort.Strings(want)
			sort.Strings(wantLeft)
			assert.Equal(t, want, moved, "the work queue holds exactly the selected originals")
			assert.Equal(t, wantLeft, left, "the poison queue holds exactly the others, visible")
			assert.Equal(t, len(c.want), res.Summary.Moved)
			assert.Equal(t, len(c.want), res.Summary.Selected)
			assert.Zero(t, res.Summary.Failed)
		})
	}
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestBodiesComeBackByteForByte(t *testing.T) {
	f := newFixture(t)
	bodies := []string{
		`{"msg":"plain","srcStamp":"2026-12-01 10:00:00.000000","id":"a"}`,
		"not json, with \"quotes\", <angle> & ampersands, tabs\tand\nnewlines",
		"ünïcödé ✓ 𝄞 and \u2028 separators",
		`{"msg":"escaped \u003c\u003e in JSON","srcStamp":"x"}`,
		"  leading and trailing spaces  ",
		"",
	}
	var want []string
	for i, b := range bodies {
		put(t, f.c.Poison, record(t, f.work, message.PoisonMalformed, fmt.Sprintf("b%d", i), b, t0))
		want = append(want, b)
	}
	// A record whose body is kept in base64 (the consumer does that for text JSON would alter).
	raw := "base64 body: ✓ and a tab\t"
	put(t, f.c.Poison, fmt.Sprintf(`{"reason":"rejected","queue":%q,"messageId":"b64","dequeueCount":1,"poisonedAt":"2026-12-01 10:00:00.000000","bodyBase64":%q}`,
		f.work, base64.StdEncoding.EncodeToString([]byte(raw))))
	want = append(want, raw)
	// A text poisoned unchanged because its record would not fit: moved as it is.
	large := strings.Repeat(`"quoted" `, (message.MaxQueueMessageBytes-1000)/9)
	put(t, f.c.Poison, large)
	want = append(want, large)
	// Bytes the queue's XML cannot carry: left where they are, and said why.
	put(t, f.c.Poison, fmt.Sprintf(`{"reason":"rejected","queue":%q,"messageId":"bad","dequeueCount":1,"poisonedAt":"2026-12-01 10:00:00.000000","bodyBase64":%q}`,
		f.work, base64.StdEncoding.EncodeToString([]byte("caf\xe9"))))

	res, err := Run(itest.Ctx(t, time.Minute), f.options(true))
	require.NoError(t, err)
	sort.Strings(want)
	assert.Equal(t, want, all(t, f.c.Queue), "every body byte for byte")
	assert.Equal(t, len(want), res.Summary.Moved)
	assert.Equal(t, map[string]int{skipUnsendable: 1}, res.Summary.Skipped)
	require.Len(t, res.Summary.SkippedList, 1)
	assert.Equal(t, "bad", res.Summary.SkippedList[0].ID)
	assert.Contains(t, res.Summary.SkippedList[0].Why, "not valid UTF-8 at byte 3")
	assert.Equal(t, []string{"bad"}, poisonIDs(all(t, f.c.Poison)))
}

func TestRefusesAQueueTheRecordDoesNotName(t *testing.T) {
	f := newFixture(t)
	other := f.work + "x"
	require.NoError(t, storage.EnsureQueue(itest.Ctx(t, 10*time.Second), f.c.Service.NewQueueClient(other)))
	rec, err := message.NewPoisonRecord(other, "elsewhere", 6, "from the other queue", message.PoisonRejected, "", t0).Encode()
	require.NoError(t, err)
	put(t, f.c.Poison, rec, record(t, f.work, message.PoisonRejected, "here", "from the work queue", t0))

	// Without -to: the work queue's record moves, the other one is refused and stays.
	res, err := Run(itest.Ctx(t, time.Minute), f.options(true))
	require.NoError(t, err)
	assert.Equal(t, 1, res.Summary.Moved)
	assert.Equal(t, map[string]int{skipOtherQueue: 1}, res.Summary.Skipped)
	assert.Contains(t, res.Summary.SkippedList[0].Why, fmt.Sprintf("names queue %s, not %s (-to %s moves it there)", other, f.work, other))
	assert.Equal(t, []string{"from the work queue"}, all(t, f.c.Queue))
	assert.Equal(t, []string{"elsewhere"}, poisonIDs(all(t, f.c.Poison)))

	// With -to naming it, it goes there.
	o := f.options(true)
	o.To = other
	res, err = Run(itest.Ctx(t, time.Minute), o)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Summary.Moved)
	assert.Equal(t, []string{"from the other queue"}, all(t, f.c.Service.NewQueueClient(other)))
	assert.Empty(t, all(t, f.c.Poison))
}

func TestRedrivingTwiceDoesNotDoubleTheWorkQueue(t *testing.T) {
	f := newFixture(t)
	f.seed(t)
	o := f.options(true)
	o.Select = Selector{Reasons: []string{ReasonRejected}}
	first, err := Run(itest.Ctx(t, time.Minute), o)
	require.NoError(t, err)
	second, err := Run(itest.Ctx(t, time.Minute), o)
	require.NoError(t, err)
	assert.Equal(t, 2, first.Summary.Moved)
	assert.Equal(t, 0, second.Summary.Selected)
	assert.Equal(t, 0, second.Summary.Moved)
	assert.Equal(t, 2, depth(t, f.c.Queue), "the work queue holds the two once")
}

func TestRateAndStop(t *testing.T) {
	f := newFixture(t)
	for i := range 40 {
		put(t, f.c.Poison, record(t, f.work, message.PoisonRejected, fmt.Sprintf("r%02d", i), fmt.Sprintf("body %d", i), t0))
	}
	stop := make(chan struct{})
	var lines []Summary
	o := f.options(true)
	o.Rate, o.Stop = 10, stop
	o.Progress = func(s Summary) {
		lines = append(lines, s)
		if len(lines) == 2 {
			close(stop)
		}
	}
	start := time.Now()
	res, err := Run(itest.Ctx(t, time.Minute), o)
	require.NoError(t, err)
	took := time.Since(start)
	assert.True(t, res.Summary.Stopped)
	assert.GreaterOrEqual(t, len(lines), 2, "a progress line a second")
	// 10/s for about two seconds: the rate holds (a moment's slack either way).
	assert.InDelta(t, 20, res.Summary.Moved, 4, "moved in %s", took)
	assert.Equal(t, res.Summary.Moved, depth(t, f.c.Queue))
	assert.Equal(t, 40-res.Summary.Moved, depth(t, f.c.Poison))
	rest, err := Run(itest.Ctx(t, time.Minute), f.options(false))
	require.NoError(t, err)
	assert.Equal(t, 40-res.Summary.Moved, rest.Report.Read, "the rest are visible again at once")
}

func TestSummarizeForVerify(t *testing.T) {
	f := newFixture(t)
	ctx := itest.Ctx(t, time.Minute)
	assert.Equal(t, fmt.Sprintf("poison queue %s-poison: empty", f.work), Summarize(ctx, f.c.Poison, f.work))
	f.seed(t)
	put(t, f.c.Poison, "stray")
	assert.Equal(t, fmt.Sprintf("poison queue %s-poison: 7 messages: malformed 2, over_delivered 2, rejected 2, unparseable 1", f.work), Summarize(ctx, f.c.Poison, f.work))
	for i := range 30 {
		put(t, f.c.Poison, record(t, f.work, message.PoisonRejected, fmt.Sprintf("x%d", i), "more", t0))
	}
	assert.Equal(t, fmt.Sprintf("poison queue %s-poison: about 37 messages; the first 32 by reason: malformed 2, over_delivered 2, rejected 27, unparseable 1", f.work), Summarize(ctx, f.c.Poison, f.work))
	missing := f.c.Service.NewQueueClient("nosuch-poison")
	assert.Equal(t, "poison queue nosuch-poison: not there yet (the consumer creates it when it starts)", Summarize(ctx, missing, "nosuch"))
}

func TestAStoppedReportGivesEverythingBack(t *testing.T) {
	f := newFixture(t)
	f.seed(t)
	stop := make(chan struct{})
	close(stop)
	o := f.options(false)
	o.Stop = stop
	res, err := Run(itest.Ctx(t, time.Minute), o)
	require.NoError(t, err)
	assert.True(t, res.Summary.Stopped)
	assert.Equal(t, 0, res.Report.Read)
	assert.Len(t, all(t, f.c.Poison), 6)
}
