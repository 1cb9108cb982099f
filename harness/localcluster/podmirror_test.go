package localcluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeConsumer stands in for the consumer: it writes its environment to $OUT.env and its pid to
// $OUT.starts, then behaves as MODE says: "term" exits 0 on SIGTERM, "ignore" ignores SIGTERM,
// "exit" exits with $EXIT_CODE after a moment. It sets its trap first, so a SIGTERM that comes
// once $OUT.starts is written finds it.
const fakeConsumer = `#!/bin/sh
case "$MODE" in
term) trap 'exit 0' TERM ;;
ignore) trap '' TERM ;;
esac
env > "$OUT.env"
echo $$ >> "$OUT.starts"
case "$MODE" in
exit) sleep 0.2; exit "$EXIT_CODE" ;;
*) while :; do sleep 0.05; done ;;
esac
`

type mirrorFixture struct {
	t      *testing.T
	cs     kubernetes.Interface
	m      *Mirror
	out    string // where the fake consumer writes
	logDir string
	log    *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the Mirror's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMirror starts a Mirror of the pods in namespace "ns" labelled app=consumer, with the pods
// given already in the fake API server.
func startMirror(t *testing.T, env map[string]string, pods ...*corev1.Pod) *mirrorFixture {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "consumer")
	require.NoError(t, os.WriteFile(bin, []byte(fakeConsumer), 0o755))
	f := &mirrorFixture{t: t, cs: fake.NewClientset(), out: filepath.Join(dir, "out"), logDir: filepath.Join(dir, "logs"), log: &syncBuffer{}}
	require.NoError(t, os.MkdirAll(f.out, 0o755))
	for _, p := range pods {
		f.create(p)
	}
	m, err := StartMirror(context.Background(), f.cs, MirrorOptions{
		Namespace: "ns", Selector: "app=consumer", Binary: bin, Env: env, LogDir: f.logDir, Log: f.log,
	})
	require.NoError(t, err)
	f.m = m
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("mirror log:\n%s", f.log.String())
		}
	})
	return f
}

// pod is a Running pod of the mirrored app whose first container's env tells the fake
// consumer what to do.
func pod(name, mode string, restart corev1.RestartPolicy, env ...corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "consumer"}},
		Spec: corev1.PodSpec{
			RestartPolicy: restart,
			Containers: []corev1.Container{
				{Name: "consumer", Image: "consumer:1", Env: append([]corev1.EnvVar{{Name: "MODE", Value: mode}}, env...)},
				{Name: "sidecar", Env: []corev1.EnvVar{{Name: "SIDECAR_ONLY", Value: "x"}}},
			},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func (f *mirrorFixture) create(p *corev1.Pod) {
	f.t.Helper()
	p = p.DeepCopy()
	p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "OUT", Value: filepath.Join(f.out, p.Name)})
	_, err := f.cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	require.NoError(f.t, err)
}

func (f *mirrorFixture) get(name string) *corev1.Pod {
	f.t.Helper()
	p, err := f.cs.CoreV1().Pods("ns").Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(f.t, err)
	return p
}

func (f *mirrorFixture) update(p *corev1.Pod) {
	f.t.Helper()
	_, err := f.cs.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{})
	require.NoError(f.t, err)
}

// starts is how many processes the pod has had.
func (f *mirrorFixture) starts(name string) int {
	b, err := os.ReadFile(filepath.Join(f.out, name+".starts"))
	if err != nil {
		return 0
	}
	return len(strings.Fields(string(b)))
}

// env is the environment the pod's latest process started with, in order.
func (f *mirrorFixture) env(name string) []string {
	b, err := os.ReadFile(filepath.Join(f.out, name+".env"))
	require.NoError(f.t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// eventually waits for cond, failing with what the mirror did.
func (f *mirrorFixture) eventually(cond func() bool, within time.Duration, what string) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not within %s; events: %+v", what, within, f.m.Events())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *mirrorFixture) kinds(pod string) []string {
	var k []string
	for _, e := range f.m.Events() {
		if e.Pod == pod {
			k = append(k, e.Kind)
		}
	}
	return k
}

func (f *mirrorFixture) event(pod, kind string) (MirrorEvent, bool) {
	for _, e := range f.m.Events() {
		if e.Pod == pod && e.Kind == kind {
			return e, true
		}
	}
	return MirrorEvent{}, false
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestMirrorEnvIsThePodsPlusOverridesPlusItsOwnAddress(t *testing.T) {
	p := pod("reader-1", "term", corev1.RestartPolicyAlways,
		corev1.EnvVar{Name: "QUEUE_NAME", Value: "orders"},
		corev1.EnvVar{Name: "AZURE_STORAGE_CONNECTION_STRING", Value: "from-the-pod"},
		corev1.EnvVar{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}},
		corev1.EnvVar{Name: "CONSUMER_HTTP_ADDR", Value: ":8080"},
		corev1.EnvVar{Name: "EMPTY", Value: ""},
	)
	other := pod("writer-1", "term", corev1.RestartPolicyAlways)
	other.Labels["app"] = "writer"
	elsewhere := pod("reader-2", "term", corev1.RestartPolicyAlways)
	elsewhere.Namespace = "other"
	f := startMirror(t, map[string]string{"AZURE_STORAGE_CONNECTION_STRING": "emulator"}, p, other, elsewhere)

	f.eventually(func() bool { return f.starts("reader-1") == 1 }, 5*time.Second, "reader-1 started")
	env := envMap(f.env("reader-1"))
	assert.Equal(t, "orders", env["QUEUE_NAME"], "the pod's plain values")
	assert.Equal(t, "term", env["MODE"])
	assert.Contains(t, env, "EMPTY", "an empty plain value is a value")
	assert.Equal(t, "emulator", env["AZURE_STORAGE_CONNECTION_STRING"], "Options.Env wins over the pod's")
	assert.Equal(t, "127.0.0.1:0", env["CONSUMER_HTTP_ADDR"], "each process its own loopback port, whatever the pod says")
	assert.NotContains(t, env, "FROM_SECRET", "values from references are not resolved")
	assert.NotContains(t, env, "SIDECAR_ONLY", "only the first container's env")
	assert.Equal(t, os.Getenv("PATH"), env["PATH"])
	assert.Equal(t, f.logDir, env["HOME"])
	assert.Equal(t, []string{"reader-1"}, f.m.Running(), "only the selected pods of the namespace")
	assert.Len(t, f.m.Pids(), 1)
	assert.FileExists(t, filepath.Join(f.logDir, "reader-1.log"))
}

func TestMirrorStartsAProcessOnlyOnceThePodRuns(t *testing.T) {
	p := pod("reader-1", "term", corev1.RestartPolicyAlways)
	p.Status.Phase = corev1.PodPending
	f := startMirror(t, nil, p)

	time.Sleep(3 * mirrorPoll)
	assert.Zero(t, f.starts("reader-1"), "a Pending pod has no process")
	assert.Empty(t, f.m.Running())

	running := f.get("reader-1")
	running.Status.Phase = corev1.PodRunning
	f.update(running)
	f.eventually(func() bool { return f.starts("reader-1") == 1 }, 5*time.Second, "started once Running")
	assert.Equal(t, []string{"reader-1"}, f.m.Running())
}

func TestMirrorStopsTheProcessWhenThePodGoes(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(f *mirrorFixture)
	}{
		{"deleted", func(f *mirrorFixture) {
			require.NoError(t, f.cs.CoreV1().Pods("ns").Delete(context.Background(), "reader-1", metav1.DeleteOptions{}))
		}},
		{"deletionTimestamp", func(f *mirrorFixture) {
			p := f.get("reader-1")
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			f.update(p)
		}},
		{"kwok's grace-0 deletion", func(f *mirrorFixture) {
			// kwok finishes every pod deletion with grace 0; the process still gets the
			// spec's terminationGracePeriodSeconds, as a kubelet would give it.
			p := f.get("reader-1")
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			p.DeletionGracePeriodSeconds = new(int64(0))
			f.update(p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("reader-1", "term", corev1.RestartPolicyAlways)
			p.Spec.TerminationGracePeriodSeconds = new(int64(30)) // the API server's default
			f := startMirror(t, nil, p)
			f.eventually(func() bool { return len(f.m.Running()) == 1 && f.starts("reader-1") == 1 }, 5*time.Second, "started")
			pid := f.m.Pids()[0]

			tc.gone(f)
			f.eventually(func() bool { _, ok := f.event("reader-1", MirrorExited); return ok }, 5*time.Second, "exited after SIGTERM")
			exited, _ := f.event("reader-1", MirrorExited)
			assert.Equal(t, 0, exited.ExitCode, "the fake consumer exits 0 on SIGTERM")
			assert.Equal(t, []string{MirrorStarted, MirrorStopping, MirrorExited}, f.kinds("reader-1"))
			assert.Empty(t, f.m.Running())
			assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "the process is gone")

			time.Sleep(1500 * time.Millisecond) // past the restart backoff
			assert.Equal(t, 1, f.starts("reader-1"), "a going pod's process is not restarted")
		})
	}
}

func TestMirrorKillsAProcessIgnoringSIGTERMAfterTheGracePeriod(t *testing.T) {
	p := pod("reader-1", "ignore", corev1.RestartPolicyAlways)
	p.Spec.TerminationGracePeriodSeconds = new(int64(1))
	f := startMirror(t, nil, p)
	f.eventually(func() bool { return f.starts("reader-1") == 1 }, 5*time.Second, "started")

	require.NoError(t, f.cs.CoreV1().Pods("ns").Delete(context.Background(), "reader-1", metav1.DeleteOptions{}))
	f.eventually(func() bool { _, ok := f.event("reader-1", MirrorExited); return ok }, 5*time.Second, "exited")
	assert.Equal(t, []string{MirrorStarted, MirrorStopping, MirrorKilled, MirrorExited}, f.kinds("reader-1"))
	stopping, _ := f.event("reader-1", MirrorStopping)
	killed, _ := f.event("reader-1", MirrorKilled)
	exited, _ := f.event("reader-1", MirrorExited)
	assert.GreaterOrEqual(t, killed.Time.Sub(stopping.Time), time.Second, "SIGKILL only after the grace period")
	assert.Less(t, killed.Time.Sub(stopping.Time), 2*time.Second)
	assert.Equal(t, 137, exited.ExitCode, "128+SIGKILL, as a kubelet reports it")
}

func TestMirrorReportsTheExitCodeOfAPodItDoesNotRestart(t *testing.T) {
	for _, tc := range []struct {
		restart corev1.RestartPolicy
		code    string
	}{
		{corev1.RestartPolicyNever, "0"},
		{corev1.RestartPolicyNever, "3"},
		{corev1.RestartPolicyOnFailure, "2"},
	} {
		t.Run(string(tc.restart)+"-"+tc.code, func(t *testing.T) {
			f := startMirror(t, nil, pod("job-1", "exit", tc.restart, corev1.EnvVar{Name: "EXIT_CODE", Value: tc.code}))
			f.eventually(func() bool { return f.get("job-1").Annotations[ExitCodeAnnotation] != "" }, 5*time.Second, "exit code annotated")
			assert.Equal(t, tc.code, f.get("job-1").Annotations[ExitCodeAnnotation])
			assert.Equal(t, "consumer", f.get("job-1").Labels["app"], "a merge patch keeps the rest")

			time.Sleep(1500 * time.Millisecond) // past the restart backoff, the pod still Running
			assert.Equal(t, 1, f.starts("job-1"), "a Job's pod gets one process")
			assert.Equal(t, []string{MirrorStarted, MirrorExited}, f.kinds("job-1"))
			assert.Empty(t, f.m.Running())
		})
	}
}

// A process that cannot start is a container that cannot: exit code 128 (a directory in the
// way of its log file makes it so here).
func TestMirrorReportsAProcessThatCannotStart(t *testing.T) {
	p := pod("job-1", "exit", corev1.RestartPolicyNever, corev1.EnvVar{Name: "EXIT_CODE", Value: "0"})
	p.Status.Phase = corev1.PodPending
	f := startMirror(t, nil, p)
	require.NoError(t, os.MkdirAll(filepath.Join(f.logDir, "job-1.log"), 0o755))
	running := f.get("job-1")
	running.Status.Phase = corev1.PodRunning
	f.update(running)

	f.eventually(func() bool { return f.get("job-1").Annotations[ExitCodeAnnotation] != "" }, 5*time.Second, "exit code annotated")
	assert.Equal(t, "128", f.get("job-1").Annotations[ExitCodeAnnotation])
	assert.Equal(t, []string{MirrorExited}, f.kinds("job-1"))
	assert.Zero(t, f.starts("job-1"))
}

func TestMirrorRestartsTheProcessOfAnAlwaysPod(t *testing.T) {
	f := startMirror(t, nil, pod("reader-1", "exit", corev1.RestartPolicyAlways, corev1.EnvVar{Name: "EXIT_CODE", Value: "1"}))
	f.eventually(func() bool { return f.starts("reader-1") >= 2 }, 5*time.Second, "restarted")
	assert.Equal(t, []string{MirrorStarted, MirrorExited, MirrorRestarted}, f.kinds("reader-1")[:3])
	exited, _ := f.event("reader-1", MirrorExited)
	restarted, _ := f.event("reader-1", MirrorRestarted)
	assert.Equal(t, 1, exited.ExitCode)
	assert.GreaterOrEqual(t, restarted.Time.Sub(exited.Time), mirrorRestartBackoff, "a backoff before the restart")
	assert.NotContains(t, f.get("reader-1").Annotations, ExitCodeAnnotation, "a restarted pod's exit is not its end")
}

func TestMirrorStopEndsEveryProcess(t *testing.T) {
	ignoring := pod("reader-2", "ignore", corev1.RestartPolicyAlways)
	ignoring.Spec.TerminationGracePeriodSeconds = new(int64(1))
	f := startMirror(t, nil, pod("reader-1", "term", corev1.RestartPolicyAlways), ignoring)
	f.eventually(func() bool { return f.starts("reader-1") == 1 && f.starts("reader-2") == 1 }, 5*time.Second, "both started")
	pids := f.m.Pids()
	require.Len(t, pids, 2)
	for _, pid := range pids {
		pgid, err := syscall.Getpgid(pid)
		require.NoError(t, err)
		require.Equal(t, pid, pgid, "each process leads its own group, so a signal reaches its children")
	}

	start := time.Now()
	f.m.Stop()
	assert.Less(t, time.Since(start), 5*time.Second, "the grace period is the pod's, not the 30s cap")
	exited, _ := f.event("reader-1", MirrorExited)
	assert.Equal(t, 0, exited.ExitCode, "SIGTERM first: the process that honours it ends by itself")
	assert.Equal(t, []string{MirrorStarted, MirrorStopping, MirrorExited}, f.kinds("reader-1"))
	assert.Equal(t, []string{MirrorStarted, MirrorStopping, MirrorKilled, MirrorExited}, f.kinds("reader-2"))
	stopping, _ := f.event("reader-2", MirrorStopping)
	killed, _ := f.event("reader-2", MirrorKilled)
	assert.GreaterOrEqual(t, killed.Time.Sub(stopping.Time), time.Second, "SIGKILL after the pod's grace period")
	assert.Empty(t, f.m.Running())
	assert.Empty(t, f.m.Pids())
	for _, pid := range pids {
		// Each process group is gone (its sleep too, once init has reaped it).
		var err error
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if err = syscall.Kill(-pid, 0); err != nil {
				break
			}
		}
		assert.ErrorIs(t, err, syscall.ESRCH, "process group %d left after Stop", pid)
	}

	f.m.Stop() // twice is fine
	n := len(f.m.Events())
	time.Sleep(3 * mirrorPoll)
	assert.Len(t, f.m.Events(), n, "nothing is started after Stop")
}

func TestStartMirrorChecksItsOptions(t *testing.T) {
	cs := fake.NewClientset()
	_, err := StartMirror(context.Background(), cs, MirrorOptions{Namespace: "ns", LogDir: t.TempDir()})
	assert.ErrorContains(t, err, "required")
	_, err = StartMirror(context.Background(), cs, MirrorOptions{Namespace: "ns", Binary: filepath.Join(t.TempDir(), "missing"), LogDir: t.TempDir()})
	assert.ErrorContains(t, err, "missing")
}
