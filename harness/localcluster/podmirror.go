package localcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// ExitCodeAnnotation is set by the Mirror on a pod whose process exited on its own and is not
// restarted (restartPolicy Never or OnFailure, i.e. a Job's pod), with the exit code in
// decimal; the stages of WriteJobPodStages then end the pod as a kubelet would.
const ExitCodeAnnotation = "aks-edw.e2e/exit-code"

// MirrorOptions configure StartMirror.
type MirrorOptions struct {
	// Namespace holds the pods to mirror (required).
	Namespace string
	// Selector is a label selector for them, e.g. "app=aqs-reader" (optional, default all).
	Selector string
	// Binary is the program run for each pod (required).
	Binary string
	// Env is set on top of the pod's first container's env, e.g. a connection string that
	// reaches the emulator rather than Azure (optional). CONSUMER_HTTP_ADDR is always
	// 127.0.0.1:0, so each process listens on its own port.
	Env map[string]string
	// LogDir gets one log per pod, <LogDir>/<pod>.log, stdout and stderr, appended to across
	// restarts (required; created if missing).
	LogDir string
	// Log receives one line per process started, stopping, killed, exited or restarted
	// (optional).
	Log io.Writer
}

// MirrorEvent is something that happened to a pod's process.
type MirrorEvent struct {
	// Time is when it happened.
	Time time.Time
	// Pod is the pod's name.
	Pod string
	// Kind is "started", "stopping" (SIGTERM sent), "killed" (SIGKILL sent after the grace
	// period), "exited" or "restarted".
	Kind string
	// ExitCode is the process's exit code for "exited": 128+n when a signal n ended it, as a
	// kubelet reports it.
	ExitCode int
	// Detail says why, or gives the pid.
	Detail string
}

// The Mirror's event kinds.
const (
	MirrorStarted   = "started"
	MirrorStopping  = "stopping"
	MirrorKilled    = "killed"
	MirrorExited    = "exited"
	MirrorRestarted = "restarted"
)

const (
	// mirrorPoll is how often the pods are listed: polling is simple and recovers from any
	// error of the API server by itself, and 200ms is well below what the tests measure.
	mirrorPoll = 200 * time.Millisecond
	// mirrorRestartBackoff is the wait before restarting a restartPolicy Always pod's process.
	mirrorRestartBackoff = time.Second
	// mirrorStopGraceCap bounds the grace period Stop gives each process.
	mirrorStopGraceCap = 30 * time.Second
	// defaultGrace is a pod's terminationGracePeriodSeconds when it sets none.
	defaultGrace = 30 * time.Second
)

// Mirror runs one local process per Running pod of a namespace and selector, standing in for
// the pod's container, since kwok runs none: kwok says a pod runs, and the Mirror makes that
// true. It is test harness: the product's programs run unchanged, with the pod's environment.
type Mirror struct {
	cs   kubernetes.Interface
	opts MirrorOptions
	env  []string // the processes' fixed environment

	cancel context.CancelFunc
	loop   chan struct{} // closed when the loop has returned
	once   sync.Once

	mu     sync.Mutex
	pods   map[types.UID]*mirroredPod
	events []MirrorEvent
}

// mirroredPod is what the Mirror knows of one pod, read and changed under mu.
type mirroredPod struct {
	name      string
	grace     time.Duration // what SIGKILL waits for after SIGTERM
	always    bool          // restartPolicy Always: restart an exited process
	proc      *mirrorProc   // the current process, or nil
	starts    int           // processes started (or tried) so far
	restartAt time.Time     // when to restart an exited process of an Always pod
	finished  bool          // its process exited and is not restarted: start no other
	annotate  *int          // an exit code not yet written to the pod
}

type mirrorProc struct {
	cmd      *exec.Cmd
	pid      int
	done     chan struct{} // closed once it has exited and been reaped
	exitCode int           // valid after done
	stopping bool          // SIGTERM sent
	killAt   time.Time     // SIGKILL is due then, once stopping
	killed   bool          // SIGKILL sent
}

// StartMirror lists the pods once (so a bad selector or an unreachable API server fails here)
// and then mirrors them until Stop.
func StartMirror(ctx context.Context, cs kubernetes.Interface, opts MirrorOptions) (*Mirror, error) {
	if opts.Namespace == "" || opts.Binary == "" || opts.LogDir == "" {
		return nil, errors.New("localcluster: MirrorOptions.Namespace, Binary and LogDir are required")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if st, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("localcluster: the program to mirror pods with: %w", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("localcluster: %s is not an executable file", opts.Binary)
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, err
	}
	m := &Mirror{
		cs:   cs,
		opts: opts,
		env:  []string{"PATH=" + os.Getenv("PATH"), "HOME=" + opts.LogDir, "TMPDIR=" + os.TempDir()},
		loop: make(chan struct{}),
		pods: map[types.UID]*mirroredPod{},
	}
	pods, err := m.list(ctx)
	if err != nil {
		return nil, err
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.sync(ctx, pods)
	go m.run(ctx)
	return m, nil
}

func (m *Mirror) list(ctx context.Context) ([]corev1.Pod, error) {
	l, err := m.cs.CoreV1().Pods(m.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: m.opts.Selector})
	if err != nil {
		return nil, fmt.Errorf("localcluster: listing pods %q in %s: %w", m.opts.Selector, m.opts.Namespace, err)
	}
	return l.Items, nil
}

func (m *Mirror) run(ctx context.Context) {
	defer close(m.loop)
	t := time.NewTicker(mirrorPoll)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pods, err := m.list(ctx)
		if err != nil {
			// Keep every process as it is: a pod the API server does not answer for has not
			// gone. Say so once per distinct error.
			if ctx.Err() == nil && err.Error() != lastErr {
				fmt.Fprintf(m.opts.Log, "mirror: %v (retrying)\n", err)
				lastErr = err.Error()
			}
			continue
		}
		lastErr = ""
		m.sync(ctx, pods)
	}
}

// sync brings the processes in line with the pods: the kubelet's job, in short.
func (m *Mirror) sync(ctx context.Context, pods []corev1.Pod) {
	now := time.Now()
	seen := map[types.UID]bool{}
	for i := range pods {
		pod := &pods[i]
		seen[pod.UID] = true
		m.mu.Lock()
		mp := m.pods[pod.UID]
		if mp == nil {
			mp = &mirroredPod{name: pod.Name}
			m.pods[pod.UID] = mp
		}
		mp.always = pod.Spec.RestartPolicy == "" || pod.Spec.RestartPolicy == corev1.RestartPolicyAlways
		mp.grace = podGrace(pod)
		m.reap(mp, now)
		switch {
		case pod.DeletionTimestamp != nil:
			m.terminate(mp, "pod is being deleted")
		case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
			m.terminate(mp, "pod is "+string(pod.Status.Phase))
		case pod.Status.Phase == corev1.PodRunning && mp.proc == nil && !mp.finished && !now.Before(mp.restartAt):
			m.startProc(mp, pod)
		}
		code := mp.annotate
		m.mu.Unlock()
		if code != nil && pod.DeletionTimestamp == nil {
			err := m.annotateExit(ctx, pod.Name, *code)
			m.mu.Lock()
			if err == nil || apierrors.IsNotFound(err) {
				mp.annotate = nil
			} else {
				fmt.Fprintf(m.opts.Log, "mirror: %s: writing its exit code: %v (retrying)\n", pod.Name, err)
			}
			m.mu.Unlock()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for uid, mp := range m.pods {
		if seen[uid] {
			continue
		}
		m.reap(mp, now)
		m.terminate(mp, "pod is gone")
		if mp.proc == nil {
			delete(m.pods, uid)
		}
	}
}

// podGrace is how long a pod's process gets between SIGTERM and SIGKILL: its spec's
// terminationGracePeriodSeconds, the kubelet's own bound. The deletion's grace period counts only
// when the spec sets none: kwok, playing the kubelet, finishes every deletion with grace 0
// (kwok v0.8.0 pkg/kwok/controllers/pod_controller.go, metav1.NewDeleteOptions(0)), so the
// deletion grace a poll sees is often kwok's, not the one the ReplicaSet controller asked for.
func podGrace(pod *corev1.Pod) time.Duration {
	switch {
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	return defaultGrace
}

// reap takes note of a process that has exited. One that exited on its own is restarted
// (restartPolicy Always) after the backoff, or its pod gets its exit code and no other process.
// Call with mu held.
func (m *Mirror) reap(mp *mirroredPod, now time.Time) {
	p := mp.proc
	if p == nil {
		return
	}
	select {
	case <-p.done:
	default:
		return
	}
	mp.proc = nil
	if p.stopping {
		return
	}
	if mp.always {
		mp.restartAt = now.Add(mirrorRestartBackoff)
		return
	}
	mp.finished = true
	code := p.exitCode
	mp.annotate = &code
}

// annotateExit writes the exit code on the pod (a merge patch of one annotation).
func (m *Mirror) annotateExit(ctx context.Context, pod string, code int) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{ExitCodeAnnotation: strconv.Itoa(code)}},
	})
	if err != nil {
		return err
	}
	_, err = m.cs.CoreV1().Pods(m.opts.Namespace).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// processEnv is a pod's process environment: the fixed part, the first container's env
// entries with a plain value, in order, then opts.Env (sorted by name, for a stable order),
// then its own HTTP address. Later entries win.
func (m *Mirror) processEnv(pod *corev1.Pod) []string {
	env := slices.Clone(m.env)
	if len(pod.Spec.Containers) > 0 {
		for _, e := range pod.Spec.Containers[0].Env {
			if e.ValueFrom == nil {
				env = append(env, e.Name+"="+e.Value)
			}
		}
	}
	keys := make([]string, 0, len(m.opts.Env))
	for k := range m.opts.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+m.opts.Env[k])
	}
	return append(env, "CONSUMER_HTTP_ADDR=127.0.0.1:0")
}

// startProc starts the pod's process in its own process group, dying with this process. Call
// with mu held.
func (m *Mirror) startProc(mp *mirroredPod, pod *corev1.Pod) {
	kind, detail := MirrorStarted, ""
	if mp.starts > 0 {
		kind, detail = MirrorRestarted, fmt.Sprintf("restart %d", mp.starts)
	}
	mp.starts++
	f, err := os.OpenFile(filepath.Join(m.opts.LogDir, pod.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.startFailed(mp, err)
		return
	}
	cmd := exec.Command(m.opts.Binary)
	cmd.Env = m.processEnv(pod)
	cmd.Dir = m.opts.LogDir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		m.startFailed(mp, err)
		return
	}
	p := &mirrorProc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	mp.proc = p
	m.record(mp.name, kind, 0, strings.TrimSpace(fmt.Sprintf("pid %d %s", p.pid, detail)))
	name := mp.name
	go func() {
		_ = cmd.Wait()
		f.Close()
		code := exitCode(cmd.ProcessState)
		m.mu.Lock()
		p.exitCode = code
		detail := "on its own"
		if p.stopping {
			detail = "after SIGTERM"
		}
		m.record(name, MirrorExited, code, fmt.Sprintf("pid %d %s", p.pid, detail))
		close(p.done)
		m.mu.Unlock()
	}()
}

// startFailed treats a process that could not start as a kubelet treats a container that could
// not: exit code 128, then restarted or reported like any other exit. Call with mu held.
func (m *Mirror) startFailed(mp *mirroredPod, err error) {
	const code = 128
	m.record(mp.name, MirrorExited, code, "failed to start: "+err.Error())
	if mp.always {
		mp.restartAt = time.Now().Add(mirrorRestartBackoff)
		return
	}
	mp.finished = true
	c := code
	mp.annotate = &c
}

// exitCode is the code a kubelet reports: the process's, or 128+n for signal n.
func exitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// terminate sends SIGTERM to the process's group and SIGKILL after the pod's grace period,
// unless it has exited by then. Call with mu held.
func (m *Mirror) terminate(mp *mirroredPod, why string) {
	mp.finished = true // the pod is going: no process again
	p := mp.proc
	if p == nil || p.stopping {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.stopping = true
	p.killAt = time.Now().Add(mp.grace)
	m.record(mp.name, MirrorStopping, 0, fmt.Sprintf("pid %d: %s; SIGKILL after %s", p.pid, why, mp.grace))
	signalGroup(p.pid, syscall.SIGTERM)
	name, grace := mp.name, mp.grace
	go func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			m.kill(name, p, fmt.Sprintf("still running %s after SIGTERM", grace))
		}
	}()
}

// kill sends SIGKILL to the process's group, unless it has exited or been sent one.
func (m *Mirror) kill(pod string, p *mirrorProc, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.killed || isDone(p) {
		return
	}
	p.killed = true
	m.record(pod, MirrorKilled, 0, fmt.Sprintf("pid %d: %s", p.pid, why))
	signalGroup(p.pid, syscall.SIGKILL)
}

// signalGroup signals the process group pid leads, or pid alone should it lead none.
func signalGroup(pid int, sig syscall.Signal) {
	if err := syscall.Kill(-pid, sig); errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pid, sig)
	}
}

// record appends an event and logs it. Call with mu held.
func (m *Mirror) record(pod, kind string, code int, detail string) {
	e := MirrorEvent{Time: time.Now(), Pod: pod, Kind: kind, ExitCode: code, Detail: detail}
	m.events = append(m.events, e)
	if kind == MirrorExited {
		fmt.Fprintf(m.opts.Log, "mirror: %s: %s with code %d (%s)\n", pod, kind, code, detail)
		return
	}
	fmt.Fprintf(m.opts.Log, "mirror: %s: %s (%s)\n", pod, kind, detail)
}

// Stop stops mirroring and ends every process: SIGTERM to its group, SIGKILL after its pod's
// grace period (at most 30s), and waits until each has exited. It is safe to call twice.
func (m *Mirror) Stop() {
	m.once.Do(func() {
		m.cancel()
		<-m.loop
	})
	m.mu.Lock()
	var procs []*mirrorProc
	var names []string
	for _, mp := range m.pods {
		if mp.proc == nil {
			continue
		}
		if mp.grace > mirrorStopGraceCap {
			mp.grace = mirrorStopGraceCap
		}
		m.terminate(mp, "the mirror stops")
		procs = append(procs, mp.proc)
		names = append(names, mp.name)
	}
	m.mu.Unlock()
	for i, p := range procs {
		deadline := time.Now().Add(mirrorStopGraceCap)
		m.mu.Lock()
		if p.killAt.Before(deadline) {
			deadline = p.killAt
		}
		m.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-p.done:
		case <-t.C:
			m.kill(names[i], p, "the mirror stops")
			<-p.done
		}
		t.Stop()
	}
}

// Events are what happened so far, oldest first (a copy).
func (m *Mirror) Events() []MirrorEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// Running names the pods with a live process, sorted.
func (m *Mirror) Running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for _, mp := range m.pods {
		if mp.proc != nil && !isDone(mp.proc) {
			names = append(names, mp.name)
		}
	}
	sort.Strings(names)
	return names
}

// Pids are the process ids of the live processes.
func (m *Mirror) Pids() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var pids []int
	for _, mp := range m.pods {
		if mp.proc != nil && !isDone(mp.proc) {
			pids = append(pids, mp.proc.pid)
		}
	}
	sort.Ints(pids)
	return pids
}

func isDone(p *mirrorProc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
