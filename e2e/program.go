package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/workload"
)

// Stand-ins for the Azure outputs workload.Deploy takes. Nothing on the local cluster reads
// them; the API server stores them and the steps read them back.
const (
	fakeStorageAccount = "storaksedwe2e"
	fakeClientID       = "00000000-0000-4000-8000-0000000e2e00"
	imageRepository    = "acraksedwe2e.azurecr.io/aks-edw/consumer"
	standInName        = "aks-edw-e2e-cluster"
	standInNamespace   = "default"
)

// desired is what the next engine run deploys; the steps change it between runs.
type desired struct {
	// settings are the consumer settings, as the stack's config would give them.
	settings components.ConsumerSettings
	// imageTag is the consumer image's tag.
	imageTag string
	// withWorkload deploys the workload; false keeps only the cluster's stand-in.
	withWorkload bool
	// brk names a deliberate defect from breaks, or "".
	brk string
	// azuriteAuth is the one substitution the harness makes (on from the start): the
	// TriggerAuthentication's workload identity, for which KEDA always builds
	// https://<account>.queue.core.windows.net, becomes a secretTargetRef to Azurite's connection
	// string, so the real operator can read the queue. Everything else is what the stack deploys.
	azuriteAuth bool
	// connectionString is Azurite's, held in the harness's Secret (empty: no Secret).
	connectionString string
	// productionAuth records the TriggerAuthentication spec the stack rendered before the
	// substitution rewrote it (for the evidence).
	productionAuth map[string]any
	// kwokNodeClass is the second substitution (on from the start): the NodePool's nodeClassRef,
	// AKS's AKSNodeClass, becomes the KWOKNodeClass Karpenter's kwok provider serves.
	kwokNodeClass bool
	// nodePool records the NodePool spec the stack rendered before the nodeClassRef
	// substitution, which step 1 compares with what the API server holds.
	nodePool map[string]any
	// scalers records, by kind, the ScaledObject or ScaledJob spec the stack registered (before
	// any break), which the scaling steps compare with what the API server holds.
	scalers map[string]map[string]any
}

func (d desired) image() string { return imageRepository + ":" + d.imageTag }

// program is the inline Pulumi program: a ConfigMap plays the AKS cluster (the workload's
// provider and objects are DeletedWith it, as they are with the ManagedCluster in the stack), and
// workload.Deploy, the stack's own Kubernetes half, deploys through the same code paths. The
// stand-in is created with admin, as Azure Resource Manager creates the cluster; the workload
// with kubeconfig, the deployer's (identity.go).
func program(admin, kubeconfig string, d *desired) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		standInProvider, err := kubernetes.NewProvider(ctx, "cluster-stand-in-k8s", &kubernetes.ProviderArgs{
			Kubeconfig:            pulumi.ToSecret(pulumi.String(admin)).(pulumi.StringOutput),
			EnableServerSideApply: pulumi.Bool(true),
		})
		if err != nil {
			return err
		}
		cluster, err := corev1.NewConfigMap(ctx, "cluster-stand-in", &corev1.ConfigMapArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(standInName), Namespace: pulumi.String(standInNamespace)},
			Data: pulumi.StringMap{
				"plays": pulumi.String("the AKS ManagedCluster: the workload's provider and objects are DeletedWith it"),
			},
		}, pulumi.Provider(standInProvider))
		if err != nil {
			return err
		}
		if !d.withWorkload {
			return nil
		}
		if err := ctx.RegisterResourceTransform(d.recordScaler); err != nil {
			return err
		}
		if d.brk != "" && !breaks[d.brk].credential {
			if err := ctx.RegisterResourceTransform(breaks[d.brk].transform); err != nil {
				return err
			}
		}
		if d.azuriteAuth {
			if err := ctx.RegisterResourceTransform(d.substituteAuth); err != nil {
				return err
			}
		}
		if d.kwokNodeClass {
			if err := ctx.RegisterResourceTransform(d.substituteNodeClass); err != nil {
				return err
			}
		}
		wl, err := workload.Deploy(ctx, "consumer", workload.Args{
			Kubeconfig:         pulumi.String(kubeconfig).ToStringOutput(),
			Cluster:            cluster,
			Settings:           d.settings,
			StorageAccountName: pulumi.String(fakeStorageAccount),
			QueueName:          pulumi.String(queueName),
			TableName:          pulumi.String(tableName),
			ClientID:           pulumi.String(fakeClientID),
			Image:              pulumi.String(d.image()),
			// Prod's window, so the API server checks the app pool's disruption budgets against
			// Karpenter's CRD (cron schedule, duration, reasons).
			MaintenanceWindow: &e2eMaintenanceWindow,
		})
		if err != nil {
			return err
		}
		if d.connectionString != "" {
			// The Secret the substituted TriggerAuthentication reads; deleted with the cluster
			// like the workload's own objects.
			if _, err := corev1.NewSecret(ctx, "azurite-connection", &corev1.SecretArgs{
				Metadata:   &metav1.ObjectMetaArgs{Name: pulumi.String(azuriteSecretName), Namespace: pulumi.String(d.settings.Namespace)},
				StringData: pulumi.StringMap{azuriteSecretKey: pulumi.ToSecret(pulumi.String(d.connectionString)).(pulumi.StringOutput)},
			}, pulumi.Provider(standInProvider), pulumi.DependsOn([]pulumi.Resource{wl.Consumer}), pulumi.DeletedWith(cluster)); err != nil {
				return err
			}
		}
		// The outputs verify reads, under the stack's own keys (infra.OutputKeys).
		ctx.Export("storageAccountName", pulumi.String(fakeStorageAccount))
		ctx.Export("queueName", pulumi.String(queueName))
		ctx.Export("tableName", pulumi.String(tableName))
		ctx.Export("kubeconfig", pulumi.ToSecret(pulumi.String(kubeconfig)))
		ctx.Export("consumerWorkload", pulumi.ToStringMap(d.settings.WorkloadOutput()))
		return nil
	}
}

// e2eMaintenanceWindow is prod's (Pulumi.prod.yaml): Sunday 02:00-06:00 UTC, weekly.
var e2eMaintenanceWindow = components.MaintenanceWindow{DayOfWeek: "Sunday", StartTime: "02:00", DurationHours: 4, UtcOffset: "+00:00", IntervalWeeks: 1}

const (
	queueName         = "aws2azmsgs"
	tableName         = "aws2azpmts"
	azuriteSecretName = "azurite-connection"
	azuriteSecretKey  = "connection"
)

// substituteAuth rewrites the TriggerAuthentication's spec to read the azure-queue scaler's
// `connection` parameter from the harness's Secret, and records the spec it replaced.
func (d *desired) substituteAuth(_ context.Context, args *pulumi.ResourceTransformArgs) *pulumi.ResourceTransformResult {
	if !strings.HasSuffix(args.Type, "keda.sh/v1alpha1:TriggerAuthentication") {
		return nil
	}
	plain, err := toPlain(args.Props)
	if err != nil {
		return nil
	}
	if spec, ok := plain["spec"].(map[string]any); ok {
		d.productionAuth = spec
	}
	plain["spec"] = azuriteAuthSpec()
	return &pulumi.ResourceTransformResult{Props: pulumi.ToMap(plain), Opts: args.Opts}
}

// substituteNodeClass is the harness's second substitution: the NodePool's nodeClassRef, AKS's
// AKSNodeClass (served by the Azure provider of Karpenter only), becomes the KWOKNodeClass of
// Karpenter's kwok provider. It records the spec it rewrote; everything else stays the stack's,
// which step 1 checks on the API server.
func (d *desired) substituteNodeClass(_ context.Context, args *pulumi.ResourceTransformArgs) *pulumi.ResourceTransformResult {
	if !strings.HasSuffix(args.Type, "karpenter.sh/v1:NodePool") {
		return nil
	}
	plain, err := toPlain(args.Props)
	if err != nil {
		return nil
	}
	spec, ok := plain["spec"].(map[string]any)
	if !ok {
		return nil
	}
	recorded, err := toPlain(args.Props)
	if err != nil {
		return nil
	}
	d.nodePool, _ = recorded["spec"].(map[string]any)
	tmpl, err := dig[map[string]any](spec, "template", "spec")
	if err != nil {
		return nil
	}
	tmpl["nodeClassRef"] = kwokNodeClassRef()
	return &pulumi.ResourceTransformResult{Props: pulumi.ToMap(plain), Opts: args.Opts}
}

// recordScaler records the spec of the ScaledObject or ScaledJob the stack registers, changing
// nothing. It is registered before the other transforms, so it sees the stack's own spec.
func (d *desired) recordScaler(_ context.Context, args *pulumi.ResourceTransformArgs) *pulumi.ResourceTransformResult {
	kind := ""
	switch {
	case strings.HasSuffix(args.Type, "keda.sh/v1alpha1:ScaledObject"):
		kind = "ScaledObject"
	case strings.HasSuffix(args.Type, "keda.sh/v1alpha1:ScaledJob"):
		kind = "ScaledJob"
	default:
		return nil
	}
	plain, err := toPlain(args.Props)
	if err != nil {
		return nil
	}
	if spec, ok := plain["spec"].(map[string]any); ok {
		if d.scalers == nil {
			d.scalers = map[string]map[string]any{}
		}
		d.scalers[kind] = spec
	}
	return nil
}

// azuriteAuthSpec is the substituted TriggerAuthentication spec.
func azuriteAuthSpec() map[string]any {
	return map[string]any{"secretTargetRef": []any{
		map[string]any{"parameter": "connection", "name": azuriteSecretName, "key": azuriteSecretKey},
	}}
}

// breakKind is a deliberate defect, injected with a Pulumi resource transform (the harness's
// own mechanism: components/ and workload/ have no test switches). Each is valid to the Go types
// and to the Pulumi SDK, and only the API server, enforcing the CRD's schema and CEL rules,
// refuses it.
type breakKind struct {
	// what says what is broken.
	what string
	// kind is the Kubernetes kind broken, matched against the Pulumi type token's suffix.
	kind string
	// refusal is a fragment of the API server's message that must come back.
	refusal string
	// edit changes the object's props.
	edit func(props map[string]any) error
	// byOperator marks a defect no schema catches (trigger metadata is a string map): the API
	// server stores it and the real KEDA operator refuses it, so step 5 leaves it out and the
	// operator's steps catch it.
	byOperator bool
	// credential marks a defect of the deployer's credential, not of an object (no edit): the
	// harness makes it (identity.go), and the first `pulumi up` must fail.
	credential bool
	// byKarpenter marks a defect the API server stores and Karpenter refuses when it tries to
	// launch a node for the consumer's pods: the first `pulumi up` must fail with Karpenter's
	// FailedScheduling message, not with the rollout's timeout.
	byKarpenter bool
}

var breaks = map[string]breakKind{
	staticAssertion: {
		what:       "kubelogin signing in with one GitHub assertion fetched during the setup, as az holds azure/login's (AAD_LOGIN_METHOD=azurecli)",
		refusal:    "AADSTS700024",
		credential: true,
	},
	// The refusal is KEDA 2.17's own text: pkg/scalers/azure_queue_scaler.go wraps the typed
	// config's error (pkg/scalers/scalersconfig/typed_config.go) in these words.
	"trigger-metadata-typo": {
		what:       "a ScaledObject whose azure-queue trigger misspells queueName (queueNme)",
		kind:       "keda.sh/v1alpha1:ScaledObject",
		refusal:    `error parsing azure queue metadata: missing required parameter "queueName" in [triggerMetadata]`,
		byOperator: true,
		edit: func(p map[string]any) error {
			triggers, err := dig[[]any](p, "spec", "triggers")
			if err != nil || len(triggers) == 0 {
				return fmt.Errorf("spec.triggers: %v", err)
			}
			t, _ := triggers[0].(map[string]any)
			md, ok := t["metadata"].(map[string]any)
			if !ok {
				return fmt.Errorf("spec.triggers[0].metadata: a %T", t["metadata"])
			}
			md["queueNme"] = md["queueName"]
			delete(md, "queueName")
			return nil
		},
	},
	"nodepool-restricted-label": {
		what:    `a NodePool requirement on the restricted label karpenter.sh/nodepool`,
		kind:    "karpenter.sh/v1:NodePool",
		refusal: `label "karpenter.sh/nodepool" is restricted`,
		edit: func(p map[string]any) error {
			reqs, err := dig[[]any](p, "spec", "template", "spec", "requirements")
			if err != nil {
				return err
			}
			tmplSpec, _ := dig[map[string]any](p, "spec", "template", "spec")
			tmplSpec["requirements"] = append(reqs, map[string]any{
				"key": "karpenter.sh/nodepool", "operator": "In", "values": []any{"aqs-app-pool"},
			})
			return nil
		},
	},
	// Karpenter v1.7's own text (pkg/controllers/provisioning/scheduling/scheduler.go): no
	// instance type survives the NodePool's requirements, so it has no template to launch from.
	"nodepool-unschedulable": {
		what:        "a NodePool requirement no instance type meets (karpenter.azure.com/sku-family In [N], the GPU family, absent from the instance types)",
		kind:        "karpenter.sh/v1:NodePool",
		refusal:     "nodepool requirements filtered out all available instance types",
		byKarpenter: true,
		edit: func(p map[string]any) error {
			reqs, err := dig[[]any](p, "spec", "template", "spec", "requirements")
			if err != nil {
				return err
			}
			for _, req := range reqs {
				if m, _ := req.(map[string]any); m["key"] == "karpenter.azure.com/sku-family" {
					m["values"] = []any{"N"}
					return nil
				}
			}
			return fmt.Errorf("no karpenter.azure.com/sku-family requirement among %d", len(reqs))
		},
	},
	"scaledobject-unknown-field": {
		what:    "a ScaledObject with a field its CRD does not declare (spec.maxReplicas instead of maxReplicaCount)",
		kind:    "keda.sh/v1alpha1:ScaledObject",
		refusal: `.spec.maxReplicas: field not declared in schema`,
		edit: func(p map[string]any) error {
			spec, err := dig[map[string]any](p, "spec")
			if err != nil {
				return err
			}
			spec["maxReplicas"] = 5
			return nil
		},
	},
}

func breakKinds() string {
	var ks []string
	for k := range breaks {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// transform applies the defect to the matching resource. The props go through JSON so the edit
// works on plain maps and slices; the engine hands them back to the provider as given.
func (b breakKind) transform(_ context.Context, args *pulumi.ResourceTransformArgs) *pulumi.ResourceTransformResult {
	if !strings.HasSuffix(args.Type, b.kind) {
		return nil
	}
	plain, err := toPlain(args.Props)
	if err == nil {
		err = b.edit(plain)
	}
	if err != nil {
		// A transform cannot return an error; an unbroken object makes the step fail instead,
		// saying the refusal never came.
		return nil
	}
	return &pulumi.ResourceTransformResult{Props: pulumi.ToMap(plain), Opts: args.Opts}
}

// toPlain turns the transform's props (resolved values) into plain Go maps.
func toPlain(m pulumi.Map) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range m {
		pv, err := plainValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = pv
	}
	return out, nil
}

func plainValue(v pulumi.Input) (any, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case pulumi.Map:
		return toPlain(t)
	case pulumi.Array:
		out := make([]any, 0, len(t))
		for _, e := range t {
			pe, err := plainValue(e)
			if err != nil {
				return nil, err
			}
			out = append(out, pe)
		}
		return out, nil
	case pulumi.String:
		return string(t), nil
	case pulumi.Bool:
		return bool(t), nil
	case pulumi.Float64:
		return float64(t), nil
	case pulumi.Int:
		return int(t), nil
	default:
		// Outputs (values from other resources) pass through untouched; ToMap keeps them.
		return v, nil
	}
}

// dig follows keys into nested maps and returns the value there as T.
func dig[T any](m map[string]any, keys ...string) (T, error) {
	var zero T
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return zero, fmt.Errorf("%s: not an object", strings.Join(keys, "."))
		}
		cur = mm[k]
	}
	t, ok := cur.(T)
	if !ok {
		return zero, fmt.Errorf("%s: a %T, not a %T", strings.Join(keys, "."), cur, zero)
	}
	return t, nil
}

func jsonUnmarshal(raw json.RawMessage, v any) error { return json.Unmarshal(raw, v) }
