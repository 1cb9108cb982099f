package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// KEDAAdapterBinary is KEDA's metrics adapter (cmd/adapter of the operator's module, built by
// e2e/tools.sh in the same go build as the operator).
const KEDAAdapterBinary = "keda-adapter"

// The names KEDA's manifests (config/metrics-server) and AKS's add-on give the adapter's Service
// and APIService: the HPA controller asks the API server for external.metrics.k8s.io/v1beta1,
// which the aggregation layer proxies to that Service.
const (
	KEDAAdapterService = "keda-metrics-apiserver"
	ExternalMetricsAPI = "v1beta1.external.metrics.k8s.io"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// KEDAAdapter is KEDA's metrics adapter running out of cluster behind the API server's
// aggregation layer, one of the cluster's processes (Stop, Exited and Leftovers cover it).
type KEDAAdapter struct {
	// LogPath is the adapter's log (stdout and stderr).
	LogPath string
	// Version is the version it reports at start-up ("2.17.3").
	Version string
	// SecureAddr is its external metrics API (HTTPS, 127.0.0.1); MetricsPort its Prometheus
	// /metrics (plain HTTP).
	SecureAddr  string
	MetricsPort int
	// Available is how long the APIService took to be Available after it was created.
	Available time.Duration
}

// KEDAAdapterOptions configure StartKEDAAdapter.
type KEDAAdapterOptions struct {
	// Namespace is where the add-on's Service lives (optional, default "kube-system", as on AKS);
	// the same namespace the operator was started with.
	Namespace string
	// ReadyTimeout bounds the wait for the adapter's /readyz and then for the APIService to be
	// Available (optional, default 60s each).
	ReadyTimeout time.Duration
}

// StartKEDAAdapter runs KEDA's metrics adapter (BinDir/keda-adapter) against the cluster, reading
// metrics from the operator k over its mTLS gRPC service, and plays what the add-on installs in
// front of it: the Service keda-metrics-apiserver and the APIService
// v1beta1.external.metrics.k8s.io with the CA that signed the adapter's serving certificate. It
// returns once the APIService is Available, so the HPA controller can read KEDA's metrics.
//
// The route: with aggregator routing off (kube-apiserver's default), the API server resolves an
// APIService's Service itself, and an ExternalName Service as https://<externalName>:<port>
// (k8s.io/apiserver pkg/util/proxy ResolveCluster); only Endpoints refuse loopback addresses. So
// the Service is ExternalName 127.0.0.1 and the APIService's port is the adapter's secure port;
// the API server checks the serving certificate against the caBundle under the name
// keda-metrics-apiserver.<namespace>.svc, as in a cluster.
//
// It runs as KEDA's manifests configure it in cluster (the same flags, the operator's certificate
// directory), except: its external metrics API on a free loopback port, and the lister,
// authentication and authorization kubeconfigs for the in-cluster configuration it would use in a
// pod. One deviation is not ours to fix: KEDA 2.17's own Prometheus server (--port) listens on
// every interface, with no flag for the address; it serves /metrics only, on a free port.
func (c *Cluster) StartKEDAAdapter(ctx context.Context, k *KEDA, opts KEDAAdapterOptions) (*KEDAAdapter, error) {
	if opts.Namespace == "" {
		opts.Namespace = "kube-system"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	if k == nil {
		return nil, fmt.Errorf("localcluster: KEDA's metrics adapter reads from the operator: start it first (StartKEDA)")
	}
	if err := c.canStart(KEDAAdapterBinary); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	a := &KEDAAdapter{
		LogPath:     filepath.Join(c.opts.Dir, "logs", KEDAAdapterBinary+".log"),
		SecureAddr:  "127.0.0.1:" + strconv.Itoa(ports[0]),
		MetricsPort: ports[1],
	}
	env, args := kedaAdapterCommand(c.KubeconfigPath, opts.Namespace, k, ports[0], ports[1])
	if err := c.startEnv(KEDAAdapterBinary, env, args...); err != nil {
		return nil, err
	}
	failed := func(err error) error { return c.withLogTail(err, a.LogPath) }
	caPEM, err := os.ReadFile(filepath.Join(k.CertDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("localcluster: %s holds no certificate", filepath.Join(k.CertDir, "ca.crt"))
	}
	// The adapter's /readyz, checked under the name the API server will check.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: KEDAAdapterService + "." + opts.Namespace + ".svc", MinVersion: tls.VersionTLS12,
	}}}
	if err := waitHTTP(ctx, c, KEDAAdapterBinary, "https://"+a.SecureAddr+"/readyz", client, opts.ReadyTimeout); err != nil {
		return nil, failed(err)
	}
	if a.Version = kedaVersion(a.LogPath); a.Version == "" {
		return nil, failed(fmt.Errorf("localcluster: %s is ready but logged no \"KEDA Version:\" line", KEDAAdapterBinary))
	}
	start := time.Now()
	if err := c.registerAdapter(ctx, opts.Namespace, ports[0], caPEM); err != nil {
		return nil, failed(err)
	}
	if err := c.waitAPIServiceAvailable(ctx, ExternalMetricsAPI, opts.ReadyTimeout); err != nil {
		return nil, failed(err)
	}
	a.Available = time.Since(start)
	return a, nil
}

// kedaAdapterCommand is the adapter's environment and flags (cmd/adapter/main.go of KEDA 2.17 and
// its config/metrics-server/deployment.yaml).
func kedaAdapterCommand(kubeconfig, namespace string, k *KEDA, securePort, metricsPort int) (env, args []string) {
	env = kedaEnv(kubeconfig, namespace)
	args = []string{
		"--secure-port=" + strconv.Itoa(securePort), "--bind-address=127.0.0.1",
		// The manifests' certificate flags: the serving pair and the CA from the operator's
		// certificate directory, which also holds the gRPC client pair (--cert-dir).
		"--client-ca-file=" + filepath.Join(k.CertDir, "ca.crt"),
		"--tls-cert-file=" + filepath.Join(k.CertDir, "tls.crt"),
		"--tls-private-key-file=" + filepath.Join(k.CertDir, "tls.key"),
		"--cert-dir=" + k.CertDir,
		"--metrics-service-address=" + k.MetricsServiceAddr,
		"--port=" + strconv.Itoa(metricsPort),
		// Out of cluster: the kubeconfigs for what a pod's service account would do.
		"--lister-kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--logtostderr=true", "--v=0",
	}
	return env, args
}

// registerAdapter creates what the add-on installs for the adapter: its Service (ExternalName to
// loopback, see StartKEDAAdapter) and the external metrics APIService trusting caPEM.
func (c *Cluster) registerAdapter(ctx context.Context, namespace string, port int, caPEM []byte) error {
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: KEDAAdapterService, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "keda-operator"}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeExternalName, ExternalName: "127.0.0.1",
			Ports: []corev1.ServicePort{{Name: "https", Port: int32(port)}},
		},
	}
	if _, err := cs.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("localcluster: creating Service %s/%s: %w", namespace, KEDAAdapterService, err)
	}
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		return err
	}
	api := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": ExternalMetricsAPI,
			"labels": map[string]any{"app.kubernetes.io/part-of": "keda-operator"}},
		"spec": map[string]any{
			"service":              map[string]any{"name": KEDAAdapterService, "namespace": namespace, "port": int64(port)},
			"group":                "external.metrics.k8s.io",
			"version":              "v1beta1",
			"caBundle":             base64.StdEncoding.EncodeToString(caPEM), // bytes are base64 in JSON
			"groupPriorityMinimum": int64(100),
			"versionPriority":      int64(100),
		},
	}}
	if _, err := dyn.Resource(apiServiceGVR).Create(ctx, api, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("localcluster: creating APIService %s: %w", ExternalMetricsAPI, err)
	}
	return nil
}

// waitAPIServiceAvailable waits until the APIService's Available condition is True: the API
// server's availability check reached the server behind it through the Service.
func (c *Cluster) waitAPIServiceAvailable(ctx context.Context, name string, timeout time.Duration) error {
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	last := "no status yet"
	for {
		u, err := dyn.Resource(apiServiceGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("localcluster: reading APIService %s: %w", name, err)
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, cd := range conds {
			m, _ := cd.(map[string]any)
			if m["type"] == "Available" {
				if m["status"] == "True" {
					return nil
				}
				last = fmt.Sprintf("Available=%v (%v: %v)", m["status"], m["reason"], m["message"])
			}
		}
		if err := c.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localcluster: APIService %s not Available after %s: %s", name, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Tail is the last n lines of the adapter's log.
func (a *KEDAAdapter) Tail(n int) string { return tail(a.LogPath, n) }
