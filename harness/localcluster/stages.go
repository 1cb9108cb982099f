package localcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// WriteJobPodStages writes kwok Stages that end a Job's pod the way a kubelet would once its
// process has exited, and returns their paths: kwok's "fast" pod-complete stage ends every Job
// pod as soon as it runs, whereas here a Job pod runs until its Mirror process exits. A Running
// pod whose restartPolicy is not Always and whose ExitCodeAnnotation is
//   - "0" becomes Succeeded, each container terminated with exit code 0, reason Completed;
//   - anything else becomes Failed, each container terminated with that exit code, reason Error.
//
// Load them with kwok's pod-ready and pod-delete stages instead of pod-complete. The files are
// kwok.x-k8s.io/v1alpha1 Stages (kwok v0.8.0); the status templates are Go templates with
// kwok's functions (Now, Quote) and sprig's (atoi), run on the pod as JSON.
func WriteJobPodStages(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, s := range jobPodStages() {
		b, err := yaml.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encoding kwok stage %s: %w", s.Metadata.Name, err)
		}
		p := filepath.Join(dir, s.Metadata.Name+".yaml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// kwokStage is the part of kwok's Stage (sigs.k8s.io/kwok/pkg/apis/v1alpha1, not a dependency
// of this module) these stages use.
type kwokStage struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec kwokStageSpec `json:"spec"`
}

type kwokStageSpec struct {
	ResourceRef struct {
		APIGroup string `json:"apiGroup"`
		Kind     string `json:"kind"`
	} `json:"resourceRef"`
	Selector struct {
		MatchAnnotations map[string]string `json:"matchAnnotations,omitempty"`
		MatchExpressions []kwokExpression  `json:"matchExpressions,omitempty"`
	} `json:"selector"`
	Steps []kwokStep `json:"steps"`
}

// kwokExpression is a selector requirement: a jq expression evaluated on the object, an
// operator (In, NotIn, Exists, DoesNotExist) and values.
type kwokExpression struct {
	JQ struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values,omitempty"`
	} `json:"jq"`
}

// kwokStep is one step of a stage; only a patch of the status here, the way kwok's own
// statusTemplate turns into one (a strategic merge patch for pods).
type kwokStep struct {
	Patch struct {
		Subresource string `json:"subresource"`
		Root        string `json:"root"`
		Template    string `json:"template"`
	} `json:"patch"`
}

func jq(key, op string, values ...string) kwokExpression {
	var e kwokExpression
	e.JQ.Key, e.JQ.Operator, e.JQ.Values = key, op, values
	return e
}

// jobPodStages are the two stages WriteJobPodStages writes.
func jobPodStages() []kwokStage {
	// A Running pod a kubelet would not restart, not being deleted.
	running := []kwokExpression{
		jq(".metadata.deletionTimestamp", "DoesNotExist"),
		jq(".status.phase", "In", "Running"),
		jq(".spec.restartPolicy", "NotIn", "Always"),
	}
	exitCode := fmt.Sprintf(".metadata.annotations[%q]", ExitCodeAnnotation)

	succeeded := newPodStage("aks-edw-job-pod-succeeded", terminatedTemplate("Succeeded", "Completed"))
	succeeded.Spec.Selector.MatchAnnotations = map[string]string{ExitCodeAnnotation: "0"}
	succeeded.Spec.Selector.MatchExpressions = running

	failed := newPodStage("aks-edw-job-pod-failed", terminatedTemplate("Failed", "Error"))
	failed.Spec.Selector.MatchExpressions = append(slices.Clone(running),
		jq(exitCode, "Exists"),
		jq(exitCode, "NotIn", "0"),
	)
	return []kwokStage{succeeded, failed}
}

func newPodStage(name, template string) kwokStage {
	var s kwokStage
	s.APIVersion, s.Kind, s.Metadata.Name = "kwok.x-k8s.io/v1alpha1", "Stage", name
	s.Spec.ResourceRef.APIGroup, s.Spec.ResourceRef.Kind = "v1", "Pod"
	var step kwokStep
	step.Patch.Subresource, step.Patch.Root, step.Patch.Template = "status", "status", template
	s.Spec.Steps = []kwokStep{step}
	return s
}

// terminatedTemplate renders a pod status in which every container has terminated with the
// pod's ExitCodeAnnotation as exit code, the pod no longer Ready, and the pod in phase.
func terminatedTemplate(phase, reason string) string {
	t := `{{ $now := Now }}
{{ $code := index .metadata.annotations "ANNOTATION" | atoi }}
{{ $started := or .status.startTime $now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  reason: PodCompleted
  status: "False"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  reason: PodCompleted
  status: "False"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{ $code }}
      finishedAt: {{ $now | Quote }}
      reason: REASON
      startedAt: {{ $started | Quote }}
{{ end }}
phase: PHASE
`
	return strings.NewReplacer("ANNOTATION", ExitCodeAnnotation, "REASON", reason, "PHASE", phase).Replace(t)
}

// creationTransition is the line of kwok's node stages that dates conditions from creation.
const creationTransition = "{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}"

// KarpenterNodeLabel is on every node Karpenter launches (the NodePool's name); the node
// stages of WriteNodeStages tell its nodes from the others by it.
const KarpenterNodeLabel = "karpenter.sh/nodepool"

// WriteNodeStages writes kwok node stages to load instead of kwok's node-initialize (the file at
// stock, kwok's kustomize/stage/node/fast/node-initialize.yaml), and returns their paths:
//   - "node-initialize": nodes without KarpenterNodeLabel (the ones the harness adds) turn Ready
//     at once, as with kwok's own;
//   - "aks-edw-node-boot": a node Karpenter launched gets a Ready=False condition at once, as a
//     kubelet registers a node that is not ready yet;
//   - "aks-edw-node-start": startDelay later (kwok's stage delay), such a node turns Ready; the
//     delay stands in for a VM's boot, so its pods wait Pending.
//
// The boot stage matters: the controller manager derives the node.kubernetes.io/not-ready taint
// from the Ready condition and takes the taint off a node that has no Ready condition at all, so
// without it the scheduler binds pods to a node that is not Ready yet (kwok runs them anyway).
// The selectors do not overlap (kwok applies one matching stage per object). The start stage
// dates the conditions' lastTransitionTime from when it runs, not from the node's creation as
// kwok's does, so a node's Ready condition says when it turned Ready.
func WriteNodeStages(stock, dir string, startDelay time.Duration) ([]string, error) {
	b, err := os.ReadFile(stock)
	if err != nil {
		return nil, fmt.Errorf("kwok's node-initialize stage: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	label := fmt.Sprintf(".metadata.labels.%q", KarpenterNodeLabel)
	const readyStatus = `.status.conditions.[] | select( .type == "Ready" ) | .status`
	var paths []string
	write := func(name string, s map[string]any) error {
		out, err := yaml.Marshal(s)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, out, 0o644); err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	}
	for _, v := range []struct {
		name     string
		operator string
		delay    time.Duration
	}{
		{"node-initialize", "DoesNotExist", 0},
		{"aks-edw-node-start", "Exists", startDelay},
	} {
		var s map[string]any
		if err := yaml.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("kwok's node-initialize stage %s: %w", stock, err)
		}
		spec, _ := s["spec"].(map[string]any)
		sel, _ := spec["selector"].(map[string]any)
		exprs, _ := sel["matchExpressions"].([]any)
		meta, _ := s["metadata"].(map[string]any)
		if spec == nil || sel == nil || exprs == nil || meta == nil {
			return nil, fmt.Errorf("kwok's node-initialize stage %s: no spec.selector.matchExpressions or metadata", stock)
		}
		meta["name"] = v.name
		if v.delay > 0 {
			// Only nodes the boot stage has marked not Ready (the stock selects any not Ready).
			first, _ := exprs[0].(map[string]any)
			if first["key"] != readyStatus {
				return nil, fmt.Errorf("kwok's node-initialize stage %s: its selector no longer starts with %q", stock, readyStatus)
			}
			exprs[0] = map[string]any{"key": readyStatus, "operator": "In", "values": []any{"False"}}
			spec["delay"] = map[string]any{"durationMilliseconds": v.delay.Milliseconds()}
			// kwok dates every condition from the node's creation; here Ready's transition is
			// when the node turned Ready, which the e2e compares with its pods' binding.
			next, _ := spec["next"].(map[string]any)
			tmpl, _ := next["statusTemplate"].(string)
			if !strings.Contains(tmpl, creationTransition) {
				return nil, fmt.Errorf("kwok's node-initialize stage %s: its statusTemplate no longer has %q", stock, creationTransition)
			}
			next["statusTemplate"] = strings.Replace(tmpl, creationTransition, "{{ $lastTransitionTime := $now }}", 1)
		}
		sel["matchExpressions"] = append(exprs, map[string]any{"key": label, "operator": v.operator})
		if err := write(v.name, s); err != nil {
			return nil, err
		}
	}
	boot := map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
		"metadata": map[string]any{"name": "aks-edw-node-boot"},
		"spec": map[string]any{
			"resourceRef": map[string]any{"apiGroup": "v1", "kind": "Node"},
			"selector": map[string]any{"matchExpressions": []any{
				map[string]any{"key": readyStatus, "operator": "DoesNotExist"},
				map[string]any{"key": label, "operator": "Exists"},
			}},
			"next": map[string]any{"statusTemplate": nodeBootTemplate},
		},
	}
	if err := write("aks-edw-node-boot", boot); err != nil {
		return nil, err
	}
	return paths, nil
}

// nodeBootTemplate is the status a kubelet gives a node it registers before it is ready.
const nodeBootTemplate = `{{ $now := Now }}
conditions:
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: "the VM is starting (make e2e: Ready after the node-start delay)"
  reason: KubeletNotReady
  status: "False"
  type: Ready
phase: Pending
`
