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
	pid := inst.Pid()
	inst.Stop()
	inst.Stop() // idempotent
	err = syscall.Kill(-pid, 0)
	assert.True(t, errors.Is(err, syscall.ESRCH), "process group gone, got %v", err)
	_, err = os.Stat(inst.Dir)
	assert.True(t, os.IsNotExist(err), "work dir removed")
	_, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", inst.QueuePort), 200*time.Millisecond)
	assert.Error(t, err, "queue port closed")
}

func TestEnsureInstalledIsANoOpWhenPresentAndSerialised(t *testing.T) {
	root := t.TempDir()
	bin := Binary(root)
	require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
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
