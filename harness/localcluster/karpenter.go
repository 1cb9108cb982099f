package localcluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// KarpenterBinary is Karpenter core's kwok cloud provider (sigs.k8s.io/karpenter/kwok, built by
// e2e/tools.sh and renamed: its own name is kwok, like kwok's).
const KarpenterBinary = "karpenter-kwok"

// KarpenterOptions configure StartKarpenter.
type KarpenterOptions struct {
	// InstanceTypesFile is the kwok provider's instance types (JSON, the format of
	// sigs.k8s.io/karpenter/kwok/cloudprovider/instance_types.json) (required).
	InstanceTypesFile string
	// BatchIdleDuration and BatchMaxDuration are Karpenter's provisioning batch window
	// (optional; 0 keeps Karpenter's 1s and 10s).
	BatchIdleDuration, BatchMaxDuration time.Duration
	// ReadyTimeout bounds the wait for its readiness endpoint (optional, default 60s).
	ReadyTimeout time.Duration
}

// Karpenter is Karpenter's controller with its kwok cloud provider, running out of cluster
// against the local control plane as one of the cluster's processes (Stop, Exited and
// Leftovers cover it). It creates kwok nodes (annotated kwok.x-k8s.io/node=fake, which the
// cluster's kwok manages) for the NodeClaims it launches.
type Karpenter struct {
	// LogPath is its log (stdout and stderr, JSON lines).
	LogPath string
	// Version is the version its karpenter_build_info metric reports ("v1.7.1").
	Version string
	// MetricsAddr serves its Prometheus metrics (/metrics), HealthProbeAddr its /healthz and
	// /readyz, both 127.0.0.1:port. Karpenter binds them as ":port" (every interface): its
	// options take a port, not an address (pkg/operator/operator.go of v1.7).
	MetricsAddr, HealthProbeAddr string
}

// StartKarpenter runs Karpenter's kwok provider (BinDir/karpenter-kwok) against the cluster and
// returns once it reports ready (its caches synced, the NodePool and NodeClaim kinds served).
// The NodePool, NodeClaim and KWOKNodeClass CRDs must be installed first. It runs as Karpenter's
// chart runs it in cluster, except: out of cluster through the admin kubeconfig, leader election
// off, and its ports chosen free on loopback. On an error after it started, it is left to
// Stop, like the rest of the cluster.
func (c *Cluster) StartKarpenter(ctx context.Context, opts KarpenterOptions) (*Karpenter, error) {
	if opts.InstanceTypesFile == "" {
		return nil, fmt.Errorf("localcluster: KarpenterOptions.InstanceTypesFile is required")
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if err := c.canStart(KarpenterBinary); err != nil {
		return nil, err
	}
	if _, err := os.Stat(opts.InstanceTypesFile); err != nil {
		return nil, fmt.Errorf("localcluster: Karpenter's instance types: %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	k := &Karpenter{
		LogPath:         filepath.Join(c.opts.Dir, "logs", KarpenterBinary+".log"),
		MetricsAddr:     "127.0.0.1:" + strconv.Itoa(ports[0]),
		HealthProbeAddr: "127.0.0.1:" + strconv.Itoa(ports[1]),
	}
	if err := c.startEnv(KarpenterBinary, karpenterEnv(c.KubeconfigPath), karpenterArgs(opts, ports[0], ports[1])...); err != nil {
		return nil, err
	}
	failed := func(err error) error { return c.withLogTail(err, k.LogPath) }
	if err := waitHTTP(ctx, c, KarpenterBinary, "http://"+k.HealthProbeAddr+"/readyz", nil, opts.ReadyTimeout); err != nil {
		return nil, failed(err)
	}
	if k.Version, err = karpenterVersion(ctx, "http://"+k.MetricsAddr+"/metrics"); err != nil {
		return nil, failed(err)
	}
	return k, nil
}

// karpenterEnv: ctrl.GetConfigOrDie reads KUBECONFIG when not in a pod; everything else is a
// flag.
func karpenterEnv(kubeconfig string) []string {
	return []string{"KUBECONFIG=" + kubeconfig}
}

// karpenterArgs are its flags (pkg/operator/options and kwok/options of Karpenter v1.7). The
// feature gates are the chart's defaults, stated so a change of defaults shows here.
func karpenterArgs(opts KarpenterOptions, metricsPort, healthPort int) []string {
	args := []string{
		"--instance-types-file-path=" + opts.InstanceTypesFile,
		"--disable-leader-election",
		"--metrics-port=" + strconv.Itoa(metricsPort),
		"--health-probe-port=" + strconv.Itoa(healthPort),
		"--log-level=info",
		"--feature-gates=NodeRepair=false,ReservedCapacity=true,SpotToSpotConsolidation=false,NodeOverlay=false,StaticCapacity=false",
	}
	if opts.BatchIdleDuration > 0 {
		args = append(args, "--batch-idle-duration="+opts.BatchIdleDuration.String())
	}
	if opts.BatchMaxDuration > 0 {
		args = append(args, "--batch-max-duration="+opts.BatchMaxDuration.String())
	}
	return args
}

var buildInfoVersion = regexp.MustCompile(`^karpenter_build_info\{.*\bversion="([^"]+)"`)

// karpenterVersion reads the version label of karpenter_build_info from its metrics.
func karpenterVersion(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("localcluster: reading Karpenter's metrics: %w", err)
	}
	defer resp.Body.Close()
	return buildInfoVersionOf(resp.Body)
}

func buildInfoVersionOf(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if m := buildInfoVersion.FindStringSubmatch(sc.Text()); m != nil {
			if m[1] == "" || m[1] == "unspecified" {
				return "", fmt.Errorf("localcluster: %s was built without its version (karpenter_build_info version=%q): rebuild it with e2e/tools.sh karpenter", KarpenterBinary, m[1])
			}
			return m[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("localcluster: Karpenter's metrics have no karpenter_build_info line")
}

// Gauge reads one series of Karpenter's metrics: the value of the first line for name whose
// labels contain label (e.g. `reason="underutilized"`); ok is false when there is none.
func (k *Karpenter) Gauge(ctx context.Context, name, label string) (value float64, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+k.MetricsAddr+"/metrics", nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	return gaugeOf(resp.Body, name, label)
}

func gaugeOf(r io.Reader, name, label string) (float64, bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		i := strings.LastIndex(line, "}")
		if i < 0 || !strings.Contains(line[:i], label) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
		if err != nil {
			return 0, false, fmt.Errorf("localcluster: Karpenter's metric line %q: %w", line, err)
		}
		return v, true, nil
	}
	return 0, false, sc.Err()
}

// Tail is the last n lines of Karpenter's log.
func (k *Karpenter) Tail(n int) string { return tail(k.LogPath, n) }
