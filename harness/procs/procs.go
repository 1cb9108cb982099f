// Package procs builds the real consumer and producer binaries and runs them
// as child processes, for the integration tests, the demo and the benchmark:
// signals (SIGTERM, SIGKILL) and memory (VmHWM) are only honest on a real
// process.
package procs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aks-edw/aks-edw/harness/azurite"
)

// Binaries are the paths of the built programs.
type Binaries struct {
	// Consumer is the consumer binary.
	Consumer string
	// Producer is the producer binary.
	Producer string
	// Proxy is cmd/azproxy, Azure's distance and limits in front of Azurite.
	Proxy string
	// Redrive is cmd/redrive, the poison queue's redrive.
	Redrive string
}

// Build compiles ./cmd/consumer, ./cmd/producer, ./cmd/azproxy and
// ./cmd/redrive of the module at root into dir (CGO off, as in the image).
func Build(ctx context.Context, root, dir string) (Binaries, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dir+string(os.PathSeparator), "./cmd/consumer", "./cmd/producer", "./cmd/azproxy", "./cmd/redrive")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build ./cmd/consumer ./cmd/producer ./cmd/azproxy ./cmd/redrive: %w\n%s", err, out)
	}
	return Binaries{Consumer: filepath.Join(dir, "consumer"), Producer: filepath.Join(dir, "producer"), Proxy: filepath.Join(dir, "azproxy"), Redrive: filepath.Join(dir, "redrive")}, nil
}

// Env returns a minimal environment for a child: PATH and HOME from this
// process, plus the given KEY=VALUE pairs. Nothing else leaks in, so a
// developer's own AZURE_* variables cannot change a test.
func Env(kv ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	return append(env, kv...)
}

// LogLine is one decoded JSON log line of the consumer.
type LogLine map[string]any

// Msg returns the line's "msg".
func (l LogLine) Msg() string { s, _ := l["msg"].(string); return s }

// Consumer is a running consumer process.
type Consumer struct {
	// Cmd is the process.
	Cmd *exec.Cmd
	// Started is when the process was started.
	Started time.Time
	// Addr is the health/metrics address it listens on (host:port).
	Addr string

	mu      sync.Mutex
	lines   []LogLine
	raw     bytes.Buffer
	stderr  bytes.Buffer
	waitErr chan error
	exited  chan struct{}
	state   *os.ProcessState
}

// StartConsumer starts the consumer binary with env (use Env) and
// CONSUMER_HTTP_ADDR=127.0.0.1:0 unless env sets it, then waits for the log
// line that names the listening address. A consumer that exits before that
// is an error carrying its stderr.
func StartConsumer(ctx context.Context, bin string, env []string) (*Consumer, error) {
	hasAddr := false
	for _, kv := range env {
		if strings.HasPrefix(kv, "CONSUMER_HTTP_ADDR=") {
			hasAddr = true
		}
	}
	if !hasAddr {
		env = append(env, "CONSUMER_HTTP_ADDR=127.0.0.1:0")
	}
	c := &Consumer{waitErr: make(chan error, 1), exited: make(chan struct{})}
	c.Cmd = exec.Command(bin)
	c.Cmd.Env = env
	c.Cmd.Stderr = &lockedWriter{mu: &c.mu, w: &c.stderr}
	c.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := c.Cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("consumer stdout: %w", err)
	}
	c.Started = time.Now()
	if err := c.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start consumer: %w", err)
	}
	addr := make(chan string, 1)
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		sent := false
		for sc.Scan() {
			var l LogLine
			line := sc.Bytes()
			c.mu.Lock()
			c.raw.Write(line)
			c.raw.WriteByte('\n')
			if json.Unmarshal(line, &l) == nil {
				c.lines = append(c.lines, l)
			}
			c.mu.Unlock()
			if !sent && l.Msg() == "consumer starting" {
				if a, ok := l["httpAddr"].(string); ok {
					addr <- a
					sent = true
				}
			}
		}
	}()
	go func() {
		<-scanDone // read all output before Wait closes the pipe
		err := c.Cmd.Wait()
		c.mu.Lock()
		c.state = c.Cmd.ProcessState
		c.mu.Unlock()
		c.waitErr <- err
		close(c.exited)
	}()
	select {
	case a := <-addr:
		c.Addr = a
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("consumer exited during start (%s):\n%s%s", c.state, c.Stderr(), c.Stdout())
	case <-ctx.Done():
		c.Kill()
		return nil, fmt.Errorf("consumer did not report its address: %w\n%s", ctx.Err(), c.Stderr())
	}
}

// Stdout returns everything the consumer logged so far.
func (c *Consumer) Stdout() string { c.mu.Lock(); defer c.mu.Unlock(); return c.raw.String() }

// Stderr returns the consumer's stderr so far.
func (c *Consumer) Stderr() string { c.mu.Lock(); defer c.mu.Unlock(); return c.stderr.String() }

// Logs returns the decoded log lines so far.
func (c *Consumer) Logs() []LogLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]LogLine(nil), c.lines...)
}

// FindLog returns the first log line with the given msg.
func (c *Consumer) FindLog(msg string) (LogLine, bool) {
	for _, l := range c.Logs() {
		if l.Msg() == msg {
			return l, true
		}
	}
	return nil, false
}

// Signal sends sig to the process.
func (c *Consumer) Signal(sig syscall.Signal) error {
	if err := c.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", sig, err)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (c *Consumer) Kill() {
	_ = c.Cmd.Process.Kill()
	<-c.exited
}

// Wait waits up to timeout for the process to exit and returns its exit
// code; an error if it is still running (it is then killed).
func (c *Consumer) Wait(timeout time.Duration) (int, error) {
	select {
	case <-c.exited:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.state.ExitCode(), nil
	case <-time.After(timeout):
		c.Kill()
		return -1, fmt.Errorf("consumer still running after %s (killed)", timeout)
	}
}

// Exited is closed when the process has exited.
func (c *Consumer) Exited() <-chan struct{} { return c.exited }

// get fetches path from the consumer's HTTP server.
func (c *Consumer) get(ctx context.Context, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+path, nil)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Ready reports whether /readyz answers 200.
func (c *Consumer) Ready(ctx context.Context) bool {
	code, _, err := c.get(ctx, "/readyz")
	return err == nil && code == http.StatusOK
}

// WaitReady polls /readyz until 200 and returns the time from process start.
func (c *Consumer) WaitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		if c.Ready(ctx) {
			return time.Since(c.Started), nil
		}
		select {
		case <-c.exited:
			return 0, fmt.Errorf("consumer exited before ready:\n%s%s", c.Stderr(), c.Stdout())
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("consumer not ready after %s:\n%s", timeout, c.Stdout())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Metrics fetches /metrics and returns the unlabelled and labelled sample
// values by their full series name (e.g. `consumer_messages_poisoned_total{reason="malformed"}`).
func (c *Consumer) Metrics(ctx context.Context) (map[string]float64, error) {
	code, body, err := c.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", code)
	}
	return ParseMetrics(body), nil
}

// ParseMetrics parses Prometheus text exposition into series -> value.
func ParseMetrics(body string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// WaitMetric polls /metrics until cond(value of series) holds.
func (c *Consumer) WaitMetric(ctx context.Context, series string, timeout time.Duration, cond func(float64) bool) (float64, error) {
	deadline := time.Now().Add(timeout)
	var last float64
	for {
		m, err := c.Metrics(ctx)
		if err == nil {
			last = m[series]
			if cond(last) {
				return last, nil
			}
		}
		select {
		case <-c.exited:
			return last, fmt.Errorf("consumer exited while waiting for %s (last %g):\n%s%s", series, last, c.Stderr(), c.Stdout())
		default:
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%s: condition not met within %s (last %g)", series, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PeakRSS returns the process's VmHWM (peak resident set size) in bytes,
// read from /proc/<pid>/status while the process is alive.
func PeakRSS(pid int) (int64, error) { return statusKB(pid, "VmHWM") }

// statusKB returns a kB field of /proc/<pid>/status in bytes.
func statusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("parse %s %q: %w", field, line, err)
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("%s not found in /proc status", field)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// CPUTime returns the user+system CPU time the process has used so far, read
// from /proc/<pid>/stat.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// BuildWithAzurite builds the binaries into dir while a fresh Azurite starts (the two take
// seconds each, so they overlap). On any failure nothing is left running.
func BuildWithAzurite(ctx context.Context, root, dir string, log io.Writer) (Binaries, *azurite.Instance, error) {
	var bins Binaries
	var buildErr error
	var wg sync.WaitGroup
	wg.Go(func() { bins, buildErr = Build(ctx, root, dir) })
	az, err := azurite.Start(ctx, azurite.Options{Root: root, Log: log})
	wg.Wait()
	if err != nil {
		return Binaries{}, nil, err
	}
	if buildErr != nil {
		az.Stop()
		return Binaries{}, nil, buildErr
	}
	return bins, az, nil
}

// RSS returns the process's current resident set size (VmRSS) in bytes.
func RSS(pid int) (int64, error) { return statusKB(pid, "VmRSS") }
