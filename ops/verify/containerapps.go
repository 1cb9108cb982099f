package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ContainerAppsAPIVersion is the Microsoft.App API version verify reads with: the GA version that
// has the scale rules' pollingInterval and cooldownPeriod and the revisions' replica counts
// (docs/cloud-notes.md, "Azure Container Apps").
const ContainerAppsAPIVersion = "2025-01-01"

// Container Apps' defaults for the fields an app or job leaves out (bicep-types 2025-01-01
// Scale, JobScale): polling 30 s and cooldown 300 s as KEDA's; at most 10 replicas (KEDA: 100)
// and 100 executions.
const (
	ContainerAppsDefaultMaxReplicas   = 10
	ContainerAppsDefaultMaxExecutions = 100
)

// ARMScope is the Entra scope of Azure Resource Manager.
const ARMScope = "https://management.azure.com/.default"

// ARMReader GETs an Azure Resource Manager resource or collection by its id.
type ARMReader interface {
	// Get returns the body of GET <endpoint><id>?api-version=<apiVersion>, or an error for any
	// status but 200 (an *azcore.ResponseError for ARM's answers).
	Get(ctx context.Context, id, apiVersion string) ([]byte, error)
}

// armClient is an ARMReader over azcore's pipeline (retries, the bearer token cached and renewed).
type armClient struct {
	pl       runtime.Pipeline
	endpoint string
}

// NewARMReader reads from Azure Resource Manager (endpoint "" is https://management.azure.com)
// with cred.
func NewARMReader(cred azcore.TokenCredential, endpoint string, opts *policy.ClientOptions) ARMReader {
	if endpoint == "" {
		endpoint = "https://management.azure.com"
	}
	pl := runtime.NewPipeline("aks-edw-verify", "v1", runtime.PipelineOptions{
		PerRetry: []policy.Policy{runtime.NewBearerTokenPolicy(cred, []string{ARMScope}, nil)},
	}, opts)
	return armClient{pl: pl, endpoint: strings.TrimSuffix(endpoint, "/")}
}

func (c armClient) Get(ctx context.Context, id, apiVersion string) ([]byte, error) {
	req, err := runtime.NewRequest(ctx, http.MethodGet, c.endpoint+id+"?api-version="+apiVersion)
	if err != nil {
		return nil, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, err
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return nil, runtime.NewResponseError(resp)
	}
	return runtime.Payload(resp)
}

// containerAppsPlatform is the consumer on Azure Container Apps, read from Resource Manager: the
// app's or job's scale settings, the replicas of its active revisions, or its executions.
type containerAppsPlatform struct {
	arm ARMReader
	w   Workload
}

// ContainerAppsPlatform is the consumer on Azure Container Apps: w.AppID is the Container App
// (ScaledObject mode) or the job (ScaledJob mode).
func ContainerAppsPlatform(arm ARMReader, w Workload) Platform {
	return containerAppsPlatform{arm: arm, w: w}
}

func (c containerAppsPlatform) HasNodes() bool { return false }

// acaScale is the part of an app's or job's properties verify reads.
type acaScale struct {
	Properties struct {
		Template struct {
			Scale *struct {
				MinReplicas     *int64 `json:"minReplicas"`
				MaxReplicas     *int64 `json:"maxReplicas"`
				PollingInterval *int64 `json:"pollingInterval"`
				CooldownPeriod  *int64 `json:"cooldownPeriod"`
				Rules           []struct {
					Name   string `json:"name"`
					Custom *struct {
						Type     string            `json:"type"`
						Metadata map[string]string `json:"metadata"`
					} `json:"custom"`
				} `json:"rules"`
			} `json:"scale"`
		} `json:"template"`
		Configuration struct {
			EventTriggerConfig *struct {
				Scale *struct {
					MinExecutions   *int64 `json:"minExecutions"`
					MaxExecutions   *int64 `json:"maxExecutions"`
					PollingInterval *int64 `json:"pollingInterval"`
					Rules           []struct {
						Name     string            `json:"name"`
						Type     string            `json:"type"`
						Metadata map[string]string `json:"metadata"`
					} `json:"rules"`
				} `json:"scale"`
			} `json:"eventTriggerConfig"`
		} `json:"configuration"`
	} `json:"properties"`
}

// ReadScaler reads the app's or job's scale settings, as a ScaledObject or ScaledJob would carry
// them (namespace: the resource group), with Container Apps' defaults for what it leaves out.
func (c containerAppsPlatform) ReadScaler(ctx context.Context) (Scaler, error) {
	what := fmt.Sprintf("%s %s", c.kindWord(), c.w.AppName)
	body, err := c.arm.Get(ctx, c.w.AppID, ContainerAppsAPIVersion)
	if err != nil {
		return Scaler{}, fmt.Errorf("reading %s (%s): %w", what, c.w.AppID, err)
	}
	var res acaScale
	if err := json.Unmarshal(body, &res); err != nil {
		return Scaler{}, fmt.Errorf("reading %s: the answer is not JSON: %w", what, err)
	}
	spec := map[string]any{}
	set := func(key string, v *int64) {
		if v != nil {
			spec[key] = *v
		}
	}
	var triggers []any
	kind := ScaleModeScaledObject
	if c.w.ScaleMode == ScaleModeScaledJob {
		kind = ScaleModeScaledJob
		etc := res.Properties.Configuration.EventTriggerConfig
		if etc == nil || etc.Scale == nil {
			return Scaler{}, fmt.Errorf("%s has no event trigger scale settings (is it an event-driven job?)", what)
		}
		spec["maxReplicaCount"] = int64(ContainerAppsDefaultMaxExecutions)
		set("minReplicaCount", etc.Scale.MinExecutions)
		set("maxReplicaCount", etc.Scale.MaxExecutions)
		set("pollingInterval", etc.Scale.PollingInterval)
		for _, r := range etc.Scale.Rules {
			triggers = append(triggers, map[string]any{"type": r.Type, "metadata": stringsToAny(r.Metadata)})
		}
	} else {
		sc := res.Properties.Template.Scale
		if sc == nil {
			return Scaler{}, fmt.Errorf("%s has no scale settings", what)
		}
		spec["maxReplicaCount"] = int64(ContainerAppsDefaultMaxReplicas)
		set("minReplicaCount", sc.MinReplicas)
		set("maxReplicaCount", sc.MaxReplicas)
		set("pollingInterval", sc.PollingInterval)
		set("cooldownPeriod", sc.CooldownPeriod)
		spec["scaleTargetRef"] = map[string]any{"name": c.w.AppName}
		for _, r := range sc.Rules {
			if r.Custom != nil {
				triggers = append(triggers, map[string]any{"type": r.Custom.Type, "metadata": stringsToAny(r.Custom.Metadata)})
			}
		}
	}
	spec["triggers"] = triggers
	return ParseScaler(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": c.w.AppName, "namespace": c.w.ResourceGroupName},
		"spec":     spec,
	}})
}

func stringsToAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c containerAppsPlatform) kindWord() string {
	if c.w.ScaleMode == ScaleModeScaledJob {
		return "Container Apps job"
	}
	return "Container App"
}

// Observe reads the replicas of the app's active revisions (ScaledObject mode), or the job's
// executions (ScaledJob mode), as Jobs: Succeeded, Failed (Failed, Stopped, Degraded) or active.
func (c containerAppsPlatform) Observe(ctx context.Context) (Observation, error) {
	var o Observation
	if c.w.ScaleMode == ScaleModeScaledJob {
		body, err := c.arm.Get(ctx, c.w.AppID+"/executions", ContainerAppsAPIVersion)
		if err != nil {
			return o, fmt.Errorf("listing the executions of %s %s: %w", c.kindWord(), c.w.AppName, err)
		}
		var list struct {
			Value []struct {
				Name       string `json:"name"`
				Properties struct {
					Status string `json:"status"`
				} `json:"properties"`
			} `json:"value"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return o, fmt.Errorf("listing the executions of %s: the answer is not JSON: %w", c.w.AppName, err)
		}
		for _, e := range list.Value {
			j := JobState{Name: e.Name, UID: e.Name}
			switch e.Properties.Status {
			case "Succeeded":
				j.Succeeded = true
			case "Failed", "Stopped", "Degraded":
				j.Failed = true
			}
			o.Jobs = append(o.Jobs, j)
		}
		sort.Slice(o.Jobs, func(a, b int) bool { return o.Jobs[a].Name < o.Jobs[b].Name })
		return o, nil
	}
	body, err := c.arm.Get(ctx, c.w.AppID+"/revisions", ContainerAppsAPIVersion)
	if err != nil {
		return o, fmt.Errorf("listing the revisions of %s %s: %w", c.kindWord(), c.w.AppName, err)
	}
	var list struct {
		Value []struct {
			Properties struct {
				Active   bool  `json:"active"`
				Replicas int32 `json:"replicas"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return o, fmt.Errorf("listing the revisions of %s: the answer is not JSON: %w", c.w.AppName, err)
	}
	for _, r := range list.Value {
		if r.Properties.Active {
			o.Replicas += r.Properties.Replicas
		}
	}
	return o, nil
}
