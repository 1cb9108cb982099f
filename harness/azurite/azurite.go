// Package azurite starts a private Azurite (the Azure Storage emulator) for
// tests, the demo and the benchmark: the queue service on disk in a temporary
// directory, the table service in memory, on ports the OS picks, and stopped
// together with their process group.
package azurite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// AccountName and AccountKey are Azurite's well-known development account.
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Instance is a running Azurite: two processes in one process group, the queue
// service persisting to Dir and the table service in memory (Start says why).
type Instance struct {
	// QueuePort and TablePort are the ports the services listen on (127.0.0.1).
	QueuePort, TablePort int
	// Dir is the working directory Azurite runs in, and the queue service's
	// storage (removed by Stop).
	Dir string

	services []*service
	exits    chan *service // each service once it has exited
	stopOnce sync.Once
}

// service is one Azurite process.
type service struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	exitErr error         // cmd.Wait's result, set before done is closed
	output  *tail
}

// ConnectionString returns the devstoreaccount1 connection string for this
// instance's queue and table endpoints.
func (i *Instance) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=http://127.0.0.1:%d/%s;TableEndpoint=http://127.0.0.1:%d/%s",
		AccountName, AccountKey, i.QueuePort, AccountName, i.TablePort, AccountName)
}

// ConnectionStringVia is ConnectionString with the queue and table
// endpoints at other base URLs (a proxy in front of this instance), e.g.
// http://127.0.0.1:41001; the account's path is added.
func (i *Instance) ConnectionStringVia(queueBase, tableBase string) string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=%s/%s;TableEndpoint=%s/%s",
		AccountName, AccountKey, queueBase, AccountName, tableBase, AccountName)
}

// RepoRoot walks up from the working directory to the directory holding
// go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repo root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of node_modules/.bin/azurite under root (all
// services in one process; the table service runs from it).
func Binary(root string) string { return filepath.Join(root, "node_modules", ".bin", "azurite") }

// QueueBinary returns the path of node_modules/.bin/azurite-queue under root
// (the queue service alone).
func QueueBinary(root string) string {
	return filepath.Join(root, "node_modules", ".bin", "azurite-queue")
}

// installMarker is the file npm ci writes last into node_modules (npm 7+'s
// hidden lockfile): its modification time is when the install finished.
func installMarker(root string) string {
	return filepath.Join(root, "node_modules", ".package-lock.json")
}

// installReason says why npm ci must run in root, or "" when the installed
// Azurite is current: node_modules/.bin/azurite is missing, no install
// marker exists, or package-lock.json or package.json changed after the last
// install (a pull that bumps Azurite). The Makefile's deps target decides the
// same way.
func installReason(root string) string {
	for _, bin := range []string{Binary(root), QueueBinary(root)} {
		if _, err := os.Stat(bin); err != nil {
			return bin + " missing"
		}
	}
	marker, err := os.Stat(installMarker(root))
	if err != nil {
		return installMarker(root) + " missing"
	}
	for _, name := range []string{"package-lock.json", "package.json"} {
		src, err := os.Stat(filepath.Join(root, name))
		if err == nil && src.ModTime().After(marker.ModTime()) {
			return name + " is newer than node_modules"
		}
	}
	return ""
}

// EnsureInstalled runs `npm ci --no-audit --no-fund` in root when Azurite is
// missing or older than package-lock.json or package.json (installReason).
// An exclusive flock on a file in the temp directory keeps two processes
// (e.g. two test packages) from running npm ci at the same time; the second
// one finds Azurite installed.
func EnsureInstalled(ctx context.Context, root string, log io.Writer) error {
	if installReason(root) == "" {
		return nil
	}
	lockPath := filepath.Join(os.TempDir(), "aks-edw-npm-ci-"+shortHash(root)+".lock")
	lf, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("npm ci lock %s: %w", lockPath, err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("npm ci lock %s: %w", lockPath, err)
	}
	defer func() { _ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) }()
	reason := installReason(root)
	if reason == "" {
		return nil // installed by whoever held the lock before us
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("azurite needs installing (%s) and npm is not on PATH: install Node.js 20+ and npm: %w", reason, err)
	}
	if log != nil {
		fmt.Fprintf(log, "azurite: %s, running npm ci in %s\n", reason, root)
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm ci in %s: %w\n%s", root, err, lastLines(string(out), 30))
	}
	if reason := installReason(root); reason != "" {
		return fmt.Errorf("npm ci in %s succeeded but %s", root, reason)
	}
	return nil
}

func shortHash(s string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return fmt.Sprintf("%08x", h)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Options tune Start.
type Options struct {
	// Root is the repository root; found with RepoRoot when empty.
	Root string
	// StartTimeout bounds installing and starting; 2 minutes when zero
	// (npm ci on a fresh machine takes most of it).
	StartTimeout time.Duration
	// Log receives progress lines (npm ci); may be nil.
	Log io.Writer
}

// listeningRE matches the line each service prints once it listens, with the
// port it got: azurite-queue prints "Azurite Queue service successfully
// listens on http://127.0.0.1:PORT", the all-in-one azurite "Azurite Table
// service is successfully listening at http://127.0.0.1:PORT". (azurite-table
// prints the port it was given, 0, so the table comes from the all-in-one.)
var listeningRE = regexp.MustCompile(`Azurite (Queue|Table) service (?:is )?successfully (?:listens on|listening at) http://[^:/]+:(\d+)`)

// Start installs Azurite if needed and starts it on free ports (port 0: the
// OS picks them and Azurite prints them) with a fresh temporary working
// directory, then waits until the queue and table ports accept connections.
// The caller must call Stop.
//
// Two processes, in one process group:
//   - the queue service (azurite-queue) keeps its messages on disk in Dir.
//     Its in-memory mode stores each message body as its own extent, and the
//     queue's garbage collector, every 60 s, deletes the extents of all
//     messages deleted since, one LokiJS findAndRemove each, and each one
//     re-sorts the whole extent index: quadratic in the messages consumed per
//     minute, on Azurite's only thread. At 200-300 msg/s it stops answering
//     for a minute or more, every minute (docs/programs.md, "Azurite"). On
//     disk, messages share 64 MB extent files and the collector has little
//     to delete.
//   - the table service stays in memory (an all-in-one azurite whose blob and
//     queue services stay idle): on disk, LokiJS would rewrite the whole
//     table every 5 s, slower as the table grows.
func Start(ctx context.Context, opts Options) (*Instance, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	root := opts.Root
	if root == "" {
		r, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		root = r
	}
	if err := EnsureInstalled(ctx, root, opts.Log); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("azurite needs node on PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "azurite-")
	if err != nil {
		return nil, fmt.Errorf("azurite work dir: %w", err)
	}
	inst := &Instance{Dir: dir, exits: make(chan *service, 2)}
	common := []string{"--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"}
	ports := make(chan listening, 2)
	exitedDuringStart := func(s *service) error {
		return fmt.Errorf("azurite %s service exited during start (%v):\n%s", s.name, s.exitErr, inst.Output())
	}
	if err := inst.spawn("queue", QueueBinary(root), ports, append([]string{
		"--location", filepath.Join(dir, "queue"), "--queueHost", "127.0.0.1", "--queuePort", "0",
	}, common...)); err != nil {
		inst.Stop()
		return nil, err
	}
	if err := inst.spawn("table", Binary(root), ports, append([]string{
		"--inMemoryPersistence", "--extentMemoryLimit", "16",
		"--blobHost", "127.0.0.1", "--blobPort", "0",
		"--queueHost", "127.0.0.1", "--queuePort", "0",
		"--tableHost", "127.0.0.1", "--tablePort", "0",
	}, common...)); err != nil {
		// A queue service that died at once took its process group with it,
		// and the table service could not join it (EPERM): name the cause.
		select {
		case s := <-inst.exits:
			err = exitedDuringStart(s)
		case <-time.After(time.Second):
		}
		inst.Stop()
		return nil, err
	}
	for inst.QueuePort == 0 || inst.TablePort == 0 {
		select {
		case l := <-ports:
			if l.service == "Queue" {
				inst.QueuePort = l.port
			} else {
				inst.TablePort = l.port
			}
		case s := <-inst.exits:
			inst.Stop()
			return nil, exitedDuringStart(s)
		case <-ctx.Done():
			inst.Stop()
			return nil, fmt.Errorf("azurite did not report its ports within %s: %w\n%s", opts.StartTimeout, ctx.Err(), inst.Output())
		}
	}
	for _, port := range []int{inst.QueuePort, inst.TablePort} {
		if err := waitPort(ctx, port); err != nil {
			inst.Stop()
			return nil, fmt.Errorf("azurite port %d: %w\n%s", port, err, inst.Output())
		}
	}
	return inst, nil
}

// listening is one "service listens on port" line.
type listening struct {
	service string
	port    int
}

// spawn starts one Azurite process in the instance's working directory and
// process group (the first process leads it), and reads its output. The
// process's own service (Queue for "queue", Table for "table") is reported on
// ports once it listens.
func (i *Instance) spawn(name, bin string, ports chan<- listening, args []string) error {
	cmd := exec.Command(bin, args...)
	cmd.Dir = i.Dir
	// One process group, killed as a whole; and each killed if we die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if len(i.services) > 0 {
		cmd.SysProcAttr.Pgid = i.PGID()
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("azurite %s pipe: %w", name, err)
	}
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return fmt.Errorf("start azurite %s service (%s): %w", name, bin, err)
	}
	_ = pw.Close()
	s := &service{name: name, cmd: cmd, done: make(chan struct{}), output: &tail{}}
	i.services = append(i.services, s)
	read := make(chan struct{}) // the output has been read to its end
	go func() {
		s.exitErr = cmd.Wait()
		// Report the exit with what the process wrote last (the reason it exited): the reader
		// may not have reached it yet. Bounded, since a child still holding the pipe would keep
		// it open.
		select {
		case <-read:
		case <-time.After(time.Second):
		}
		close(s.done)
		i.exits <- s
	}()
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			s.output.add(line)
			if m := listeningRE.FindStringSubmatch(line); !sent && m != nil && strings.EqualFold(m[1], name) {
				var port int
				fmt.Sscan(m[2], &port)
				ports <- listening{service: m[1], port: port} // buffered, one per process
				sent = true
			}
		}
		_ = pr.Close()
	}()
	return nil
}

func waitPort(ctx context.Context, port int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PGID returns the id of the process group both Azurite processes run in.
func (i *Instance) PGID() int { return i.services[0].cmd.Process.Pid }

// NamedPids returns the process id of each Azurite process by its service
// ("queue", "table").
func (i *Instance) NamedPids() map[string]int {
	m := make(map[string]int, len(i.services))
	for _, s := range i.services {
		m[s.name] = s.cmd.Process.Pid
	}
	return m
}

// Pids returns the process ids of Azurite's processes.
func (i *Instance) Pids() []int {
	pids := make([]int, 0, len(i.services))
	for _, s := range i.services {
		pids = append(pids, s.cmd.Process.Pid)
	}
	return pids
}

// Signal sends sig to every Azurite process (SIGSTOP freezes storage as a
// whole, SIGCONT resumes it).
func (i *Instance) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-i.PGID(), sig); err != nil {
		return fmt.Errorf("signal azurite's process group: %w", err)
	}
	return nil
}

// Output returns each Azurite process's last output lines (for failure
// messages).
func (i *Instance) Output() string {
	var b strings.Builder
	for _, s := range i.services {
		fmt.Fprintf(&b, "[azurite %s]\n%s\n", s.name, s.output.String())
	}
	return b.String()
}

// Stop kills Azurite's whole process group (SIGTERM, then SIGKILL after 3 s),
// waits for it and removes its working directory. It is safe to call more
// than once, and on an instance whose start failed half-way.
func (i *Instance) Stop() {
	i.stopOnce.Do(func() {
		if len(i.services) > 0 {
			pgid := i.PGID()
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			deadline := time.After(3 * time.Second)
			for _, s := range i.services {
				select {
				case <-s.done:
				case <-deadline:
					_ = syscall.Kill(-pgid, syscall.SIGKILL)
					<-s.done
				}
			}
			// Anything left in the group (there should be nothing) goes too.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		_ = os.RemoveAll(i.Dir)
	})
}

// tail keeps the last lines of Azurite's output.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > 50 {
		t.lines = t.lines[len(t.lines)-50:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
