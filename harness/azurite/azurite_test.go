package azurite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartServesAndStopLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := Start(ctx, Options{Log: os.Stderr})
	require.NoError(t, err, "Azurite must start (run `npm ci` in the repo root; Node.js 20+)")
	t.Cleanup(inst.Stop)

	require.NotZero(t, inst.QueuePort)
	require.NotZero(t, inst.TablePort)
	assert.NotEqual(t, inst.QueuePort, inst.TablePort)
	assert.Contains(t, inst.ConnectionString(), fmt.Sprintf("QueueEndpoint=http://127.0.0.1:%d/devstoreaccount1", inst.QueuePort))
	assert.Contains(t, inst.ConnectionString(), fmt.Sprintf("TableEndpoint=http://127.0.0.1:%d/devstoreaccount1", inst.TablePort))
	for _, p := range []int{inst.QueuePort, inst.TablePort} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
		require.NoError(t, err)
		_ = c.Close()
	}
	pgid := inst.PGID()
	inst.Stop()
	inst.Stop() // idempotent
	err = syscall.Kill(-pgid, 0)
	assert.True(t, errors.Is(err, syscall.ESRCH), "process group gone, got %v", err)
	_, err = os.Stat(inst.Dir)
	assert.True(t, os.IsNotExist(err), "work dir removed")
	_, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", inst.QueuePort), 200*time.Millisecond)
	assert.Error(t, err, "queue port closed")
}

// fakeInstall makes root look like a finished npm ci at time installed, with
// package-lock.json and package.json last changed at lock.
func fakeInstall(t *testing.T, root string, installed, lock time.Time) {
	t.Helper()
	for _, bin := range []string{Binary(root), QueueBinary(root)} {
		require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
		require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	}
	require.NoError(t, os.WriteFile(installMarker(root), []byte("{}\n"), 0o644))
	require.NoError(t, os.Chtimes(installMarker(root), installed, installed))
	for _, name := range []string{"package-lock.json", "package.json"} {
		p := filepath.Join(root, name)
		require.NoError(t, os.WriteFile(p, []byte("{}\n"), 0o644))
		require.NoError(t, os.Chtimes(p, lock, lock))
	}
}

func TestInstallReason(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name  string
		setup func(t *testing.T, root string)
		want  string // "" = up to date
	}{
		{"nothing installed", func(t *testing.T, root string) {}, "node_modules/.bin/azurite missing"},
		{"binary removed", func(t *testing.T, root string) {
			fakeInstall(t, root, t0, t0.Add(-time.Hour))
			require.NoError(t, os.Remove(Binary(root)))
		}, "node_modules/.bin/azurite missing"},
		{"no install marker", func(t *testing.T, root string) {
			fakeInstall(t, root, t0, t0.Add(-time.Hour))
			require.NoError(t, os.Remove(installMarker(root)))
		}, "node_modules/.package-lock.json missing"},
		{"installed after the lockfile changed", func(t *testing.T, root string) {
			fakeInstall(t, root, t0, t0.Add(-time.Hour))
		}, ""},
		{"installed in the same instant", func(t *testing.T, root string) {
			fakeInstall(t, root, t0, t0)
		}, ""},
		{"lockfile newer than the install", func(t *testing.T, root string) {
			fakeInstall(t, root, t0, t0.Add(-time.Hour))
			require.NoError(t, os.Chtimes(filepath.Join(root, "package-lock.json"), t0.Add(time.Second), t0.Add(time.Second)))
		}, "package-lock.json is newer than node_modules"},
		{"package.json newer than the install", func(t *testing.T, root string) {
			fakeInstall(t, root, t0, t0.Add(-time.Hour))
			require.NoError(t, os.Chtimes(filepath.Join(root, "package.json"), t0.Add(time.Second), t0.Add(time.Second)))
		}, "package.json is newer than node_modules"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(t, root)
			got := installReason(root)
			if tc.want == "" {
				assert.Empty(t, got)
			} else {
				assert.Contains(t, got, tc.want)
			}
		})
	}
}

func TestEnsureInstalledReinstallsWhenTheLockfileIsNewer(t *testing.T) {
	root := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	fakeInstall(t, root, t0, t0.Add(time.Minute))
	require.NoError(t, os.Remove(filepath.Join(root, "package.json"))) // npm ci fails at once, offline
	err := EnsureInstalled(context.Background(), root, nil)
	require.Error(t, err, "a stale install must be redone (npm ci runs, and fails here)")
	assert.Contains(t, err.Error(), "npm ci in "+root)
}

func TestEnsureInstalledIsANoOpWhenPresentAndSerialised(t *testing.T) {
	root := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	fakeInstall(t, root, t0, t0.Add(-time.Minute))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = EnsureInstalled(context.Background(), root, nil) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

func TestEnsureInstalledExplainsAFailedInstall(t *testing.T) {
	root := t.TempDir() // no package.json: npm ci fails at once, offline
	err := EnsureInstalled(context.Background(), root, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "npm ci in "+root)
}

func TestRepoRootFindsGoMod(t *testing.T) {
	root, err := RepoRoot()
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	assert.NoError(t, err)
}

// fakeService writes a stand-in for an Azurite service script at bin: a node
// server on a free port that prints the line Start waits for.
func fakeService(t *testing.T, bin, listening string) {
	t.Helper()
	script := `#!/bin/sh
exec node -e '
const s = require("http").createServer((q, r) => r.end()).listen(0, "127.0.0.1", () => {
  console.log("` + listening + `" + s.address().port);
});'
`
	require.NoError(t, os.WriteFile(bin, []byte(script), 0o755))
}

func TestStartSaysWhichServiceFailed(t *testing.T) {
	root := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	fakeInstall(t, root, t0, t0.Add(-time.Minute))
	require.NoError(t, os.WriteFile(QueueBinary(root), []byte("#!/bin/sh\necho 'port in use' >&2\nexit 3\n"), 0o755))
	fakeService(t, Binary(root), "Azurite Table service is successfully listening at http://127.0.0.1:")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Root: root})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "azurite queue service exited during start")
	assert.Contains(t, err.Error(), "port in use", "its output is in the error")
}
