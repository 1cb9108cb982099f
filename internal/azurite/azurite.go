// Package azurite starts a private Azurite (the Azure Storage emulator) for
// tests, the demo and the benchmark: in memory, on ports the OS picks, and
// stopped together with its whole process group.
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

// Instance is a running Azurite.
type Instance struct {
	// QueuePort and TablePort are the ports the services listen on (127.0.0.1).
	QueuePort, TablePort int
	// Dir is the working directory Azurite runs in (removed by Stop).
	Dir string

	cmd      *exec.Cmd
	waitErr  chan error
	stopOnce sync.Once
	output   *tail
}

// ConnectionString returns the devstoreaccount1 connection string for this
// instance's queue and table endpoints.
func (i *Instance) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;QueueEndpoint=http://127.0.0.1:%d/%s;TableEndpoint=http://127.0.0.1:%d/%s",
		AccountName, AccountKey, i.QueuePort, AccountName, i.TablePort, AccountName)
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

// Binary returns the path of node_modules/.bin/azurite under root.
func Binary(root string) string { return filepath.Join(root, "node_modules", ".bin", "azurite") }

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
	if _, err := os.Stat(Binary(root)); err != nil {
		return Binary(root) + " missing"
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
	if _, err := os.Stat(Binary(root)); err != nil {
		return fmt.Errorf("npm ci in %s succeeded but %s is missing: %w", root, Binary(root), err)
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

var listeningRE = regexp.MustCompile(`Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)`)

// Start installs Azurite if needed and starts it in memory on free ports
// (port 0: the OS picks them and Azurite prints them), with a fresh temporary
// working directory, then waits until the queue and table ports accept
// connections. The caller must call Stop.
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
	// --location cannot be combined with --inMemoryPersistence in 3.37.0, so
	// the temp dir is the working directory instead: anything Azurite would
	// write lands there and is removed by Stop.
	cmd := exec.Command(Binary(root),
		"--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry",
		"--blobHost", "127.0.0.1", "--blobPort", "0",
		"--queueHost", "127.0.0.1", "--queuePort", "0",
		"--tableHost", "127.0.0.1", "--tablePort", "0",
		"--extentMemoryLimit", "256",
	)
	cmd.Dir = dir
	// Own process group, killed as a whole; and killed if we die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("azurite pipe: %w", err)
	}
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start azurite %s: %w", Binary(root), err)
	}
	_ = pw.Close()
	inst := &Instance{Dir: dir, cmd: cmd, waitErr: make(chan error, 1), output: &tail{}}
	go func() { inst.waitErr <- cmd.Wait() }()

	ports := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		found := map[string]string{}
		sent := false
		for sc.Scan() {
			line := sc.Text()
			inst.output.add(line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				found[m[1]] = m[2]
				if !sent && found["Queue"] != "" && found["Table"] != "" {
					ports <- [2]string{found["Queue"], found["Table"]}
					sent = true
				}
			}
		}
		_ = pr.Close()
	}()

	select {
	case p := <-ports:
		fmt.Sscan(p[0], &inst.QueuePort)
		fmt.Sscan(p[1], &inst.TablePort)
	case err := <-inst.waitErr:
		inst.waitErr <- err
		inst.Stop()
		return nil, fmt.Errorf("azurite exited during start (%v):\n%s", err, inst.output.String())
	case <-ctx.Done():
		inst.Stop()
		return nil, fmt.Errorf("azurite did not report its ports within %s: %w\n%s", opts.StartTimeout, ctx.Err(), inst.output.String())
	}
	for _, port := range []int{inst.QueuePort, inst.TablePort} {
		if err := waitPort(ctx, port); err != nil {
			inst.Stop()
			return nil, fmt.Errorf("azurite port %d: %w\n%s", port, err, inst.output.String())
		}
	}
	return inst, nil
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

// Pid returns Azurite's process id (its process group id too).
func (i *Instance) Pid() int { return i.cmd.Process.Pid }

// Output returns Azurite's last output lines (for failure messages).
func (i *Instance) Output() string { return i.output.String() }

// Stop kills Azurite's whole process group (SIGTERM, then SIGKILL after 3 s),
// waits for it and removes its working directory. It is safe to call more
// than once.
func (i *Instance) Stop() {
	i.stopOnce.Do(func() {
		pgid := i.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case err := <-i.waitErr:
			i.waitErr <- err
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			err := <-i.waitErr
			i.waitErr <- err
		}
		// Anything left in the group (there should be nothing) goes too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
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
