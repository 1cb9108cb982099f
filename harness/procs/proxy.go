package procs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/aks-edw/aks-edw/harness/azproxy"
	"github.com/aks-edw/aks-edw/harness/azurite"
)

// Proxy is cmd/azproxy running as its own process in front of an Azurite:
// its CPU is not charged to the process that measures through it.
type Proxy struct {
	// Queue and Table are the proxy's endpoints (base URLs, no account).
	Queue, Table string
	// Remote reads the counts and changes the settings.
	Remote azproxy.Remote
	cmd    *exec.Cmd
	az     *azurite.Instance
}

// StartProxy starts bin (cmd/azproxy) in front of az with opts and waits for
// its endpoints.
func StartProxy(ctx context.Context, bin string, az *azurite.Instance, opts azproxy.Options) (*Proxy, error) {
	args := []string{
		"-queue-upstream", fmt.Sprintf("http://127.0.0.1:%d", az.QueuePort),
		"-table-upstream", fmt.Sprintf("http://127.0.0.1:%d", az.TablePort),
		"-rtt", opts.RTT.String(), "-jitter", opts.Jitter.String(),
		"-queue-rate", fmt.Sprint(opts.QueueRate), "-account-rate", fmt.Sprint(opts.AccountRate),
	}
	if opts.Burst > 0 {
		args = append(args, "-burst", opts.Burst.String())
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = Env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var errBuf bytes.Buffer
	cmd.Stderr = &lockedWriter{mu: &mu, w: &errBuf}
	stderr := func() string { mu.Lock(); defer mu.Unlock(); return errBuf.String() }
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start azproxy: %w", err)
	}
	type urls struct{ Queue, Table, Control string }
	got := make(chan urls, 1)
	go func() {
		var u urls
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			_ = json.Unmarshal(sc.Bytes(), &u)
		}
		got <- u
		for sc.Scan() {
		}
	}()
	select {
	case u := <-got:
		if u.Queue == "" || u.Table == "" || u.Control == "" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("azproxy did not print its endpoints: %s", stderr())
		}
		return &Proxy{Queue: u.Queue, Table: u.Table, Remote: azproxy.Remote{Control: u.Control}, cmd: cmd, az: az}, nil
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("azproxy did not start in 10 s: %s", stderr())
}

// ConnectionString reaches the Azurite through the proxy.
func (p *Proxy) ConnectionString() string { return p.az.ConnectionStringVia(p.Queue, p.Table) }

// Pid is the proxy's process id.
func (p *Proxy) Pid() int { return p.cmd.Process.Pid }

// Stop ends the proxy.
func (p *Proxy) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
