package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
)

func TestPKIServesLoopbackAndKubeconfigTrustsIt(t *testing.T) {
	dir := t.TempDir()
	caPEM, err := writePKI(dir)
	require.NoError(t, err)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "serving.crt"), filepath.Join(dir, "serving.key"))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"})
	assert.NoError(t, err, "the serving certificate must verify for 127.0.0.1 against the CA")
	for _, f := range []string{"ca.crt", "serving.crt", "serving.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-client.crt", "front-proxy-client.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "%s holds key material or trust: owner only", f)
	}

	// The aggregation layer: the front-proxy client certificate is signed by its own CA, which
	// extension API servers trust for the name --requestheader-allowed-names gives.
	fpCA, err := os.ReadFile(filepath.Join(dir, "front-proxy-ca.crt"))
	require.NoError(t, err)
	fpPool := x509.NewCertPool()
	require.True(t, fpPool.AppendCertsFromPEM(fpCA))
	fp, err := tls.LoadX509KeyPair(filepath.Join(dir, "front-proxy-client.crt"), filepath.Join(dir, "front-proxy-client.key"))
	require.NoError(t, err)
	fpLeaf, err := x509.ParseCertificate(fp.Certificate[0])
	require.NoError(t, err)
	assert.Equal(t, frontProxyClient, fpLeaf.Subject.CommonName)
	_, err = fpLeaf.Verify(x509.VerifyOptions{Roots: fpPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err, "a client certificate of the front-proxy CA")
	_, err = fpLeaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.Error(t, err, "not of the cluster CA: a user certificate must not pass as the front proxy")

	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig("https://127.0.0.1:6443", caPEM, "tok")))
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:6443", cfg.Host)
	assert.Equal(t, "tok", cfg.BearerToken)
	assert.Equal(t, caPEM, cfg.CAData)
}

func TestSplitYAML(t *testing.T) {
	docs := splitYAML([]byte("a: 1\n---\nb: 2\n---\n"))
	require.Len(t, docs, 3)
	assert.Equal(t, "a: 1\n", string(docs[0]))
	assert.Equal(t, "b: 2\n", string(docs[1]))
	assert.Empty(t, strings.TrimSpace(string(docs[2])))
	assert.Len(t, splitYAML([]byte("key: '---'\n")), 1, "--- inside a value is not a separator")
}

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := freePorts(5)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, p := range ports {
		assert.False(t, seen[p], "port %d twice", p)
		seen[p] = true
	}
}

// A copy of `sleep` in a bin folder plays a tool left running: Leftovers must find it and
// KillLeftovers must end it.
func TestLeftoversFindsAndKillsProcessesFromTheBinFolder(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err, "the test needs `sleep`")
	bin := t.TempDir()
	src, err := os.ReadFile(sleep)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bin, "kube-apiserver"), src, 0o755))

	found, err := Leftovers(bin)
	require.NoError(t, err)
	assert.Empty(t, found)

	cmd := exec.Command(filepath.Join(bin, "kube-apiserver"), "60")
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	found, err = Leftovers(bin)
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Contains(t, found[0], "kube-apiserver (pid ")
	assert.ErrorIs(t, CheckNoLeftovers(bin), ErrLeftovers)

	require.NoError(t, KillLeftovers(bin))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("KillLeftovers did not end the process")
	}
	assert.NoError(t, CheckNoLeftovers(bin))
}

func TestStartNamesTheMissingBinary(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir(), Dir: t.TempDir(), Log: io.Discard})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "etcd is not built in")
	assert.Contains(t, err.Error(), "make e2e-tools")
}

// Stop ends a child and its process group, also one that ignores SIGTERM (SIGKILL after 10 s is
// too slow for a unit test, so the child here exits on SIGTERM and a grandchild must go too).
func TestStopEndsTheProcessGroup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	bin, dir := t.TempDir(), t.TempDir()
	src, err := os.ReadFile(sh)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bin, "etcd"), src, 0o755))
	c := &Cluster{opts: Options{BinDir: bin, Dir: dir, Log: io.Discard}}
	// The shell starts a grandchild `sleep` in the same process group, then waits.
	require.NoError(t, c.start("etcd", "-c", "sleep 60 & wait"))
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, c.Exited(), "the child must still run")
	pid := c.Pids()["etcd"]
	require.NotZero(t, pid)

	c.Stop()
	assert.NoError(t, CheckNoLeftovers(bin))
	// The grandchild was in the group: no process of the group is left.
	// (An orphaned grandchild is reaped by init shortly after it dies.)
	var gone error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if gone = syscall.Kill(-pid, 0); gone != nil {
			break
		}
	}
	assert.ErrorIs(t, gone, syscall.ESRCH, "processes left in the group after Stop")
}
