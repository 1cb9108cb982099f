package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// ModuleFile is a file inside a Go module at an exact version.
type ModuleFile struct {
	// Module and Version name the module (e.g. sigs.k8s.io/karpenter v1.8.0).
	Module, Version string
	// Path is the file's path inside the module.
	Path string
}

// String is module@version/path.
func (f ModuleFile) String() string { return f.Module + "@" + f.Version + "/" + f.Path }

// ModuleDir downloads module@version through the Go module proxy (or finds it in the module
// cache) and returns its folder: `go mod download -json`, the same way the go command fetches any
// module, so no copy of the files lives in this repository.
func ModuleDir(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", module, version, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no folder in %s", module, version, out)
	}
	return info.Dir, nil
}

// Resolve returns the local paths of files, downloading each module once.
func Resolve(ctx context.Context, files []ModuleFile) ([]string, error) {
	dirs := map[string]string{}
	var paths []string
	for _, f := range files {
		key := f.Module + "@" + f.Version
		dir, ok := dirs[key]
		if !ok {
			var err error
			if dir, err = ModuleDir(ctx, f.Module, f.Version); err != nil {
				return nil, err
			}
			dirs[key] = dir
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates the CustomResourceDefinitions in the files (one or more YAML documents
// each) and waits until each is Established, so its kind is served.
func (c *Cluster) InstallCRDs(ctx context.Context, files []string) ([]string, error) {
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range splitYAML(b) {
			var obj map[string]any
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				return nil, fmt.Errorf("%s document %d: %w", f, i, err)
			}
			if len(obj) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if u.GetKind() != "CustomResourceDefinition" {
				return nil, fmt.Errorf("%s document %d is a %q, not a CustomResourceDefinition", f, i, u.GetKind())
			}
			if _, err := dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("creating CRD %s from %s: %w", u.GetName(), f, err)
			}
			names = append(names, u.GetName())
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range names {
		for {
			u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("reading CRD %s: %w", name, err)
			}
			if established(u) {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("CRD %s not Established after 60s", name)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return names, nil
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// splitYAML splits a multi-document YAML file.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if bytes.Equal(bytes.TrimRight(line, "\r\n"), []byte("---")) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

// Node is a fake node for kwok to run.
type Node struct {
	// Name is the node's name.
	Name string
	// Labels are added to the standard ones (hostname, os, arch).
	Labels map[string]string
	// Taints are the node's taints.
	Taints []corev1.Taint
}

// AddNodes registers fake nodes that kwok manages, and waits until each is Ready.
func (c *Cluster) AddNodes(ctx context.Context, nodes []Node) error {
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		labels := map[string]string{
			"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok",
		}
		for k, v := range n.Labels {
			labels[k] = v
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels, Annotations: map[string]string{KwokNodeAnnotation: "fake"}},
			Spec:       corev1.NodeSpec{Taints: n.Taints},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating fake node %s: %w", n.Name, err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range nodes {
		for {
			node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if nodeReady(node) {
				break
			}
			if err := c.Exited(); err != nil {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("fake node %s not Ready after 60s (is kwok running? log: %s)", n.Name, filepath.Join(c.opts.Dir, "logs", "kwok.log"))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Leftovers lists running processes whose executable is in dir (the tools' bin folder): after
// Stop there must be none, from this run or an earlier one that was killed.
func Leftovers(dir string) ([]string, error) {
	pids, err := leftoverPids(dir)
	if err != nil {
		return nil, err
	}
	var found []string
	for pid, name := range pids {
		found = append(found, fmt.Sprintf("%s (pid %d)", name, pid))
	}
	sort.Strings(found)
	return found, nil
}

func leftoverPids(dir string) (map[int]string, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	found := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue // gone, or not ours to read
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if filepath.Dir(exe) == dir {
			found[pid] = filepath.Base(exe)
		}
	}
	return found, nil
}

// KillLeftovers sends SIGKILL to every process Leftovers finds.
func KillLeftovers(dir string) error {
	found, err := leftoverPids(dir)
	if err != nil {
		return err
	}
	for pid := range found {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

// ErrLeftovers is returned by CheckNoLeftovers.
var ErrLeftovers = errors.New("processes left running")

// CheckNoLeftovers fails, naming them, when Leftovers finds any.
func CheckNoLeftovers(dir string) error {
	found, err := Leftovers(dir)
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s", ErrLeftovers, strings.Join(found, ", "))
	}
	return nil
}
