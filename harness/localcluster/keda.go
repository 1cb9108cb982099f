package localcluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// KEDABinary is the KEDA operator's program in Options.BinDir (KEDA's cmd/operator, built by
// e2e/tools.sh).
const KEDABinary = "keda-operator"

// KEDAOptions configure StartKEDA.
type KEDAOptions struct {
	// Namespace is KEDA's cluster object namespace, where it reads the secrets of
	// ClusterTriggerAuthentications (optional, default "kube-system", where AKS's add-on runs).
	Namespace string
	// ReadyTimeout bounds the wait for the operator's readiness endpoint (optional, default 60s).
	ReadyTimeout time.Duration
}

// KEDA is a KEDA operator running out of cluster against the local control plane, as one of
// the cluster's processes: Stop, Exited and Leftovers cover it.
type KEDA struct {
	// LogPath is the operator's log (stdout and stderr).
	LogPath string
	// Version is the version the operator reports at start-up ("2.17.3").
	Version string
	// MetricsAddr serves its Prometheus metrics (/metrics), HealthProbeAddr its /healthz and
	// /readyz, MetricsServiceAddr its gRPC metrics service (mTLS with CertDir's pair); all
	// host:port on 127.0.0.1.
	MetricsAddr, HealthProbeAddr, MetricsServiceAddr string
	// CertDir holds ca.crt, tls.crt and tls.key, the pair its gRPC metrics service serves; the
	// same pair works as a client certificate for that service.
	CertDir string
}

// StartKEDA runs the KEDA operator (BinDir/keda-operator) against the cluster, watching all
// namespaces, and returns once it reports ready. Its CRDs must be installed first. It runs out
// of cluster the way KEDA's own manifests configure it in cluster, except: every port on
// loopback, leader election off, and certificates generated here rather than by its cert
// rotation (which would also patch the external metrics APIService and KEDA's webhook). On an
// error after the operator started, it is left to Stop, like the rest of the cluster.
func (c *Cluster) StartKEDA(ctx context.Context, opts KEDAOptions) (*KEDA, error) {
	if opts.Namespace == "" {
		opts.Namespace = "kube-system"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if err := c.canStart(KEDABinary); err != nil {
		return nil, err
	}
	certDir := filepath.Join(c.opts.Dir, "keda-certs")
	if err := writeKEDACerts(certDir, opts.Namespace); err != nil {
		return nil, fmt.Errorf("localcluster: writing KEDA's certificates: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	k := &KEDA{
		LogPath:            filepath.Join(c.opts.Dir, "logs", KEDABinary+".log"),
		MetricsAddr:        addr(ports[0]),
		HealthProbeAddr:    addr(ports[1]),
		MetricsServiceAddr: addr(ports[2]),
		CertDir:            certDir,
	}
	env, args := kedaCommand(c.KubeconfigPath, opts.Namespace, k)
	if err := c.startEnv(KEDABinary, env, args...); err != nil {
		return nil, err
	}
	failed := func(err error) error { return c.withLogTail(err, k.LogPath) }
	if err := waitHTTP(ctx, c, KEDABinary, "http://"+k.HealthProbeAddr+"/readyz", nil, opts.ReadyTimeout); err != nil {
		return nil, failed(err)
	}
	// The gRPC metrics service (what KEDA's metrics adapter reads) starts with the manager and
	// stops it when it cannot load the certificates: it listening means they loaded.
	if err := waitListening(ctx, c, k.MetricsServiceAddr, 10*time.Second); err != nil {
		return nil, failed(fmt.Errorf("localcluster: KEDA's gRPC metrics service: %w", err))
	}
	if k.Version = kedaVersion(k.LogPath); k.Version == "" {
		return nil, failed(fmt.Errorf("localcluster: %s is ready but logged no \"KEDA Version:\" line", KEDABinary))
	}
	return k, nil
}

// kedaEnv is what the operator and the metrics adapter read from their pod's environment, out of
// cluster (cmd/operator and cmd/adapter of KEDA 2.17).
func kedaEnv(kubeconfig, namespace string) []string {
	return []string{
		// ctrl.GetConfigOrDie reads KUBECONFIG when not in a pod.
		"KUBECONFIG=" + kubeconfig,
		// Required to be set; empty means all namespaces (KEDA's manifests set it so).
		"WATCH_NAMESPACE=",
		// Else it reads the in-pod service account namespace file, and exits without it.
		"KEDA_CLUSTER_OBJECT_NAMESPACE=" + namespace,
		// The pod's namespace (the downward API in KEDA's manifests); read only for leader
		// election and cert rotation, both off, and it defaults to "keda": set for consistency.
		"POD_NAMESPACE=" + namespace,
	}
}

// kedaCommand is the operator's environment and flags (cmd/operator/main.go of KEDA 2.17).
func kedaCommand(kubeconfig, namespace string, k *KEDA) (env, args []string) {
	env = kedaEnv(kubeconfig, namespace)
	args = []string{
		"--metrics-bind-address=" + k.MetricsAddr,
		"--health-probe-bind-address=" + k.HealthProbeAddr,
		"--metrics-service-bind-address=" + k.MetricsServiceAddr,
		"--cert-dir=" + k.CertDir,
		"--leader-elect=false",
		"--enable-cert-rotation=false",
		"--zap-log-level=info", "--zap-encoder=console", "--zap-time-encoding=rfc3339",
	}
	return env, args
}

// writeKEDACerts writes a CA and a pair it signs for the operator's gRPC metrics service and the
// metrics adapter, under the names their in-cluster services have (and loopback's). The pair is for servers and clients:
// the service asks its clients for a certificate from the same CA.
func writeKEDACerts(dir, namespace string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := newCA("aks-edw-e2e-keda-ca")
	if err != nil {
		return err
	}
	// One pair for both of KEDA's servers, as its cert rotation makes it: the operator's gRPC
	// service and the metrics adapter behind the aggregation layer (which the API server checks
	// as keda-metrics-apiserver.<namespace>.svc).
	names := []string{"localhost"}
	for _, svc := range []string{"keda-operator", KEDAAdapterService} {
		names = append(names, svc, svc+"."+namespace, svc+"."+namespace+".svc", svc+"."+namespace+".svc.cluster.local")
	}
	cert, key, err := ca.issue("keda-operator", []net.IP{net.IPv4(127, 0, 0, 1)}, names,
		x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	return writeFiles(dir, map[string][]byte{"ca.crt": ca.certPEM, "tls.crt": cert, "tls.key": key})
}

var kedaVersionLine = regexp.MustCompile(`KEDA Version: ([^\s"\\]+)`)

// kedaVersion is the version in the operator's start-up line "KEDA Version: 2.17.3", or "".
func kedaVersion(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	if m := kedaVersionLine.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// canStart checks that a process of the cluster called name is not running yet and that its
// binary is built in BinDir.
func (c *Cluster) canStart(name string) error {
	if _, running := c.Pids()[name]; running {
		return fmt.Errorf("localcluster: %s is already started", name)
	}
	if _, err := os.Stat(filepath.Join(c.opts.BinDir, name)); err != nil {
		return fmt.Errorf("localcluster: %s is not built in %s (run `make e2e-tools`): %w", name, c.opts.BinDir, err)
	}
	return nil
}

// withLogTail adds the end of a process's log to err, unless err already names a process that
// exited, with the end of its log.
func (c *Cluster) withLogTail(err error, logPath string) error {
	if c.Exited() != nil {
		return err
	}
	return fmt.Errorf("%w; last lines of %s:\n%s", err, logPath, tail(logPath, 15))
}

// Tail is the last n lines of the operator's log.
func (k *KEDA) Tail(n int) string { return tail(k.LogPath, n) }

// waitListening dials addr until it accepts a TCP connection, failing early when a process of
// the cluster has exited.
func waitListening(ctx context.Context, c *Cluster, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			return conn.Close()
		}
		if xerr := c.Exited(); xerr != nil {
			return xerr
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
