package localcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
