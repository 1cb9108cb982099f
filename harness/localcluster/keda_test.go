package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKEDACertsServeLoopbackAndTheOperatorService(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keda-certs")
	require.NoError(t, writeKEDACerts(dir, "kube-system"))
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, "KEDA's gRPC server reads %s from --cert-dir", f)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	leaf, pool := kedaPair(t, dir)
	for _, name := range []string{"127.0.0.1", "localhost", "keda-operator.kube-system.svc", "keda-operator.kube-system.svc.cluster.local"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
		assert.NoError(t, err, "serving as %s", name)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err, "the pair is also a client certificate for the mTLS service")
}

// kedaPair loads the pair writeKEDACerts wrote and a pool of its CA.
func kedaPair(t *testing.T, dir string) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	return leaf, pool
}

func TestKEDACommandRunsOutOfClusterOnLoopback(t *testing.T) {
	k := &KEDA{MetricsAddr: "127.0.0.1:1", HealthProbeAddr: "127.0.0.1:2", MetricsServiceAddr: "127.0.0.1:3", CertDir: "/d/certs"}
	env, args := kedaCommand("/d/kubeconfig", "kube-system", k)
	assert.Equal(t, []string{
		"KUBECONFIG=/d/kubeconfig",
		"WATCH_NAMESPACE=", // set and empty: all namespaces; unset, it exits
		"KEDA_CLUSTER_OBJECT_NAMESPACE=kube-system",
		"POD_NAMESPACE=kube-system",
	}, env)
	assert.Contains(t, args, "--metrics-bind-address=127.0.0.1:1")
	assert.Contains(t, args, "--health-probe-bind-address=127.0.0.1:2")
	assert.Contains(t, args, "--metrics-service-bind-address=127.0.0.1:3")
	assert.Contains(t, args, "--cert-dir=/d/certs")
	assert.Contains(t, args, "--leader-elect=false")
	assert.Contains(t, args, "--enable-cert-rotation=false", "rotation would patch the APIService and the webhook")
}

func TestKEDAVersionFromItsStartUpLine(t *testing.T) {
	dir := t.TempDir()
	for name, log := range map[string]string{
		"console": "2026-01-02T03:04:05Z\tINFO\tsetup\tStarting manager\n2026-01-02T03:04:05Z\tINFO\tsetup\tKEDA Version: 2.17.3\n",
		"json":    `{"level":"info","logger":"setup","msg":"KEDA Version: 2.17.3"}` + "\n",
	} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(log), 0o644))
		assert.Equal(t, "2.17.3", kedaVersion(p), name)
	}
	p := filepath.Join(dir, "none")
	require.NoError(t, os.WriteFile(p, []byte("Starting manager\n"), 0o644))
	assert.Empty(t, kedaVersion(p))
	assert.Empty(t, kedaVersion(filepath.Join(dir, "missing")))
}

func TestStartKEDANamesTheMissingBinary(t *testing.T) {
	c := &Cluster{opts: Options{BinDir: t.TempDir(), Dir: t.TempDir(), Log: io.Discard}}
	_, err := c.StartKEDA(context.Background(), KEDAOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "keda-operator is not built in")
}

// A keda-operator that prints its environment and exits: StartKEDA fails at once, with its log,
// and the environment is the fixed one plus KEDA's.
func TestStartKEDAFailsEarlyWhenTheOperatorExits(t *testing.T) {
	bin, dir := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, KEDABinary), []byte("#!/bin/sh\nenv\necho \"args: $*\"\necho boom >&2\nexit 1\n"), 0o755))
	c := &Cluster{opts: Options{BinDir: bin, Dir: dir, Log: io.Discard}, KubeconfigPath: filepath.Join(dir, "kubeconfig")}
	t.Cleanup(c.Stop)

	start := time.Now()
	_, err := c.StartKEDA(context.Background(), KEDAOptions{Namespace: "keda"})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "no waiting for the timeout once it has exited")
	assert.Contains(t, err.Error(), "keda-operator exited")
	assert.Contains(t, err.Error(), "boom", "the log's tail")

	b, err := os.ReadFile(filepath.Join(dir, "logs", "keda-operator.log"))
	require.NoError(t, err)
	log := string(b)
	for _, want := range []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "KUBECONFIG=" + c.KubeconfigPath,
		"WATCH_NAMESPACE=\n", "KEDA_CLUSTER_OBJECT_NAMESPACE=keda", "POD_NAMESPACE=keda",
		"--cert-dir=" + filepath.Join(dir, "keda-certs"),
	} {
		assert.Contains(t, log, want)
	}
	assert.FileExists(t, filepath.Join(dir, "keda-certs", "tls.crt"))
	// Nothing else of this process's environment (sh adds PWD).
	env, _, _ := strings.Cut(log, "args:")
	for _, kv := range strings.Split(strings.TrimSpace(env), "\n") {
		k, _, _ := strings.Cut(kv, "=")
		assert.Contains(t, []string{"PATH", "HOME", "TMPDIR", "PWD", "KUBECONFIG", "WATCH_NAMESPACE", "KEDA_CLUSTER_OBJECT_NAMESPACE", "POD_NAMESPACE"}, k)
	}
}

// The one pair serves KEDA's metrics adapter too, under the name the API server checks it by
// (keda-metrics-apiserver.<namespace>.svc), and the API server's front proxy has its own CA.
func TestKEDACertsServeTheMetricsAdapterService(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keda-certs")
	require.NoError(t, writeKEDACerts(dir, "kube-system"))
	leaf, pool := kedaPair(t, dir)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "keda-metrics-apiserver.kube-system.svc"})
	assert.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "keda-metrics-apiserver.keda.svc"})
	assert.Error(t, err, "only the namespace it was made for")
}

func TestKEDAAdapterCommandRunsOutOfClusterOnLoopback(t *testing.T) {
	k := &KEDA{MetricsServiceAddr: "127.0.0.1:3", CertDir: "/d/certs"}
	env, args := kedaAdapterCommand("/d/kubeconfig", "kube-system", k, 7443, 7080)
	assert.Equal(t, []string{"KUBECONFIG=/d/kubeconfig", "WATCH_NAMESPACE=", "KEDA_CLUSTER_OBJECT_NAMESPACE=kube-system", "POD_NAMESPACE=kube-system"}, env)
	for _, want := range []string{
		"--secure-port=7443", "--bind-address=127.0.0.1",
		"--tls-cert-file=/d/certs/tls.crt", "--tls-private-key-file=/d/certs/tls.key", "--client-ca-file=/d/certs/ca.crt",
		"--cert-dir=/d/certs", // where its gRPC client finds the pair for the operator's mTLS service
		"--metrics-service-address=127.0.0.1:3", "--port=7080",
		"--lister-kubeconfig=/d/kubeconfig", "--authentication-kubeconfig=/d/kubeconfig", "--authorization-kubeconfig=/d/kubeconfig",
	} {
		assert.Contains(t, args, want)
	}
}

func TestStartKEDAAdapterNeedsTheOperatorAndItsBinary(t *testing.T) {
	c := &Cluster{opts: Options{BinDir: t.TempDir(), Dir: t.TempDir(), Log: io.Discard}}
	_, err := c.StartKEDAAdapter(context.Background(), nil, KEDAAdapterOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "start it first")
	_, err = c.StartKEDAAdapter(context.Background(), &KEDA{}, KEDAAdapterOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "keda-adapter is not built in")
}
