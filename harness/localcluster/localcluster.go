// Package localcluster is a test harness, not product code: it runs a real Kubernetes control
// plane on loopback for the end-to-end run (`make e2e`): etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods become Ready), all as
// plain child processes built by e2e/tools.sh. It follows controller-runtime's envtest and
// kwokctl's binary runtime: free loopback ports, wait for /readyz, install CRDs from files, and
// one Stop that ends everything it started, also after a failure or Ctrl-C.
package localcluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/aks-edw/aks-edw/harness/fakeentra"
)

// Binaries are the programs the control plane runs, all in one folder (e2e/tools.sh's bin/).
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// Options configure Start.
type Options struct {
	// BinDir holds the Binaries (required).
	BinDir string
	// Dir is where the cluster keeps its data, certificates, kubeconfig and logs (required; the
	// caller owns it and removes it).
	Dir string
	// KwokStages are kwok Stage files (node and pod lifecycles) (required for kwok).
	KwokStages []string
	// Log receives one line per process started and stopped (optional).
	Log io.Writer
	// APIServerFlags are added to kube-apiserver's (optional; e.g. Entra.OIDCFlags).
	APIServerFlags []string
	// HPASyncPeriod is how often the controller manager's HPA controller acts (optional; 0 keeps
	// Kubernetes' 15 s).
	HPASyncPeriod time.Duration
}

// Cluster is a running control plane.
type Cluster struct {
	// Kubeconfig is a kubeconfig (YAML) for the cluster's admin, with the CA embedded.
	Kubeconfig string
	// KubeconfigPath is the same kubeconfig written to a file.
	KubeconfigPath string
	server         string
	caPEM          []byte
	// RESTConfig is the admin's client configuration.
	RESTConfig *rest.Config

	opts  Options
	mu    sync.Mutex
	procs []*process
}

type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// Start starts etcd, the API server, the controller manager, the scheduler and kwok, and returns
// once the API server is ready. On error, whatever started is stopped again.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.BinDir == "" || opts.Dir == "" {
		return nil, errors.New("localcluster: Options.BinDir and Options.Dir are required")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("localcluster: %s is not built in %s (run `make e2e-tools`): %w", b, opts.BinDir, err)
		}
	}
	c = &Cluster{opts: opts}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	pki := filepath.Join(opts.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]

	ca, err := writePKI(pki)
	if err != nil {
		return nil, fmt.Errorf("localcluster: writing certificates: %w", err)
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Kubeconfig = kubeconfig(server, ca, token)
	c.server, c.caPEM = server, ca
	c.KubeconfigPath = filepath.Join(opts.Dir, "kubeconfig")
	if err := os.WriteFile(c.KubeconfigPath, []byte(c.Kubeconfig), 0o600); err != nil {
		return nil, err
	}
	if c.RESTConfig, err = clientcmd.RESTConfigFromKubeConfig([]byte(c.Kubeconfig)); err != nil {
		return nil, fmt.Errorf("localcluster: reading the kubeconfig it wrote: %w", err)
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	if err := c.start("etcd",
		"--name=e2e", "--data-dir="+filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--initial-advertise-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--initial-cluster=e2e=http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--log-level=warn",
	); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, c, "etcd", etcdURL+"/health", nil, 60*time.Second); err != nil {
		return nil, err
	}
	if err := c.start("kube-apiserver", append([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + filepath.Join(pki, "serving.crt"), "--tls-private-key-file=" + filepath.Join(pki, "serving.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--token-auth-file=" + tokenFile, "--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16", "--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false", "--profiling=false",
		// The aggregation layer (KEDA's metrics adapter behind it): the API server proxies to an
		// APIService's server as the front proxy, which vouches for the user in these headers.
		"--requestheader-client-ca-file=" + filepath.Join(pki, "front-proxy-ca.crt"),
		"--requestheader-allowed-names=" + frontProxyClient,
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + filepath.Join(pki, "front-proxy-client.crt"),
		"--proxy-client-key-file=" + filepath.Join(pki, "front-proxy-client.key"),
	}, opts.APIServerFlags...)...,
	); err != nil {
		return nil, err
	}
	client, err := rest.HTTPClientFor(c.RESTConfig)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, c, "kube-apiserver", server+"/readyz", client, 120*time.Second); err != nil {
		return nil, err
	}
	kcm := []string{}
	if opts.HPASyncPeriod > 0 {
		kcm = append(kcm, "--horizontal-pod-autoscaler-sync-period="+opts.HPASyncPeriod.String())
	}
	if err := c.start("kube-controller-manager", append(kcm,
		"--kubeconfig="+c.KubeconfigPath, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(kcmPort),
		"--service-account-private-key-file="+filepath.Join(pki, "sa.key"),
		"--root-ca-file="+filepath.Join(pki, "ca.crt"),
		"--use-service-account-credentials=false", "--profiling=false",
		// Nothing here runs a cloud, node IPAM or persistent volumes.
		"--controllers=*,-nodeipam,-persistentvolume-binder,-persistentvolume-expander,-attachdetach,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
	)...); err != nil {
		return nil, err
	}
	if err := c.start("kube-scheduler",
		"--kubeconfig="+c.KubeconfigPath, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort), "--profiling=false",
	); err != nil {
		return nil, err
	}
	kwokArgs := []string{
		"--kubeconfig=" + c.KubeconfigPath,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=" + KwokNodeAnnotation + "=fake",
		"--node-ip=10.240.0.1", "--cidr=10.244.0.0/16", "--node-lease-duration-seconds=40",
	}
	for _, s := range opts.KwokStages {
		kwokArgs = append(kwokArgs, "--config="+s)
	}
	if err := c.start("kwok", kwokArgs...); err != nil {
		return nil, err
	}
	return c, nil
}

// KwokNodeAnnotation marks the nodes kwok manages (value "fake").
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// start runs one binary of the control plane with its output in <Dir>/logs/<name>.log. Each
// child gets its own process group (Stop signals the group) and dies with this process
// (Pdeathsig), so an interrupted run leaves nothing behind.
func (c *Cluster) start(name string, args ...string) error {
	return c.startEnv(name, nil, args...)
}

// startEnv is start with env (KEY=value entries) added to the children's fixed minimal
// environment (PATH, HOME, TMPDIR).
func (c *Cluster) startEnv(name string, env []string, args ...string) error {
	logs := filepath.Join(c.opts.Dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(logs, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.opts.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.opts.Dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.opts.Dir, "TMPDIR=" + os.TempDir()}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("localcluster: starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	fmt.Fprintf(c.opts.Log, "localcluster: started %s (pid %d, log %s)\n", name, cmd.Process.Pid, logPath)
	return nil
}

// Pids are the process ids of what Start started, by name.
func (c *Cluster) Pids() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for _, p := range c.procs {
		m[p.name] = p.cmd.Process.Pid
	}
	return m
}

// Exited names any process that has already exited, with the end of its log: a control plane
// that lost a member is not one to trust a result from.
func (c *Cluster) Exited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, p := range c.procs {
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.name, p.err, p.logPath, tail(p.logPath, 15)))
		default:
		}
	}
	return errors.Join(errs...)
}

// Stop ends every process it started, newest first: SIGTERM to its process group, then SIGKILL
// after 10 seconds. It waits until each has exited, and is safe to call twice.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		fmt.Fprintf(c.opts.Log, "localcluster: stopped %s (pid %d)\n", p.name, pgid)
	}
}

// waitHTTP polls url until it answers 200, failing early when the process has exited.
func waitHTTP(ctx context.Context, c *Cluster, name, url string, client *http.Client, timeout time.Duration) error {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		if err := c.Exited(); err != nil {
			return fmt.Errorf("localcluster: waiting for %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localcluster: %s not ready at %s after %s (last: %s); log: %s", name, url, timeout, last, filepath.Join(c.opts.Dir, "logs", name+".log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// freePorts reserves n distinct loopback ports by listening on port 0, then releases them.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("localcluster: finding a free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", b), nil
}

// writePKI writes a CA, a serving certificate for 127.0.0.1 signed by it, and the service
// account signing key pair; it returns the CA certificate (PEM).
func writePKI(dir string) ([]byte, error) {
	ca, err := newCA("aks-edw-e2e-ca")
	if err != nil {
		return nil, err
	}
	srvCert, srvKey, err := ca.issue("kube-apiserver",
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	frontProxy, err := newCA("aks-edw-e2e-front-proxy-ca")
	if err != nil {
		return nil, err
	}
	fpCert, fpKey, err := frontProxy.issue(frontProxyClient, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"front-proxy-ca.crt":     frontProxy.certPEM,
		"front-proxy-client.crt": fpCert,
		"front-proxy-client.key": fpKey,
		"ca.crt":                 ca.certPEM,
		"serving.crt":            srvCert,
		"serving.key":            srvKey,
		"sa.key":                 pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":                 pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
	}
	if err := writeFiles(dir, files); err != nil {
		return nil, err
	}
	return ca.certPEM, nil
}

// frontProxyClient is the common name of the API server's front-proxy client certificate, the
// one name extension API servers accept it under (--requestheader-allowed-names).
const frontProxyClient = "front-proxy-client"

// certAuthority is a CA made for one run: it lives a day and its key stays in memory.
type certAuthority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newCA(commonName string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certAuthority{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// issue signs a key pair for the names and usages; it returns the certificate and the key (PEM),
// checked to load as a pair, or the program that reads them fails later with a less clear message.
func (ca *certAuthority) issue(commonName string, ips []net.IP, dnsNames []string, usages ...x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
		IPAddresses: ips, DNSNames: dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// writeFiles writes each file into dir, readable by the owner only: they hold keys or trust.
func writeFiles(dir string, files map[string][]byte) error {
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// KubeloginKubeconfig renders the kubeconfig AKS gives for an Entra-only cluster (the user
// credentials in kubelogin's exec format: `kubelogin get-token --login devicecode --server-id
// <AKS server app> --client-id <AKS client app> --tenant-id <tenant> --environment
// AzurePublicCloud`, client.authentication.k8s.io/v1beta1) pointing at this API server, with
// extraArgs after AKS's and env set for kubelogin (what a CI job's environment holds).
func (c *Cluster) KubeloginKubeconfig(kubelogin, tenantID string, env map[string]string, extraArgs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: %s\n    certificate-authority-data: %s\n",
		c.server, base64.StdEncoding.EncodeToString(c.caPEM))
	fmt.Fprintf(&b, "users:\n- name: clusterUser_e2e\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: %q\n      interactiveMode: IfAvailable\n      provideClusterInfo: false\n      args:\n", kubelogin)
	for _, a := range append([]string{"get-token", "--login", "devicecode", "--server-id", fakeentra.AKSServerAppID, "--client-id", fakeentra.AKSClientAppID,
		"--tenant-id", tenantID, "--environment", "AzurePublicCloud"}, extraArgs...) {
		fmt.Fprintf(&b, "      - %q\n", a)
	}
	if len(env) > 0 {
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("      env:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "      - name: %q\n        value: %q\n", k, env[k])
		}
	}
	b.WriteString("contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: clusterUser_e2e\ncurrent-context: e2e\n")
	return b.String()
}

// kubeconfig renders an admin kubeconfig with a bearer token.
func kubeconfig(server string, caPEM []byte, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: %s\n    certificate-authority-data: %s\n",
		server, base64.StdEncoding.EncodeToString(caPEM))
	fmt.Fprintf(&b, "users:\n- name: admin\n  user:\n    token: %s\n", token)
	b.WriteString("contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\ncurrent-context: e2e\n")
	return b.String()
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
