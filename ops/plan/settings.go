package plan

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// Setting is one key setting: a label and its value as the resources' inputs carry it.
type Setting struct {
	Name, Value string
}

// Type tokens the key settings read.
const (
	typeResourceGroup  = "azure-native:resources:ResourceGroup"
	typeCluster        = "azure-native:containerservice:ManagedCluster"
	typeAgentPool      = "azure-native:containerservice:AgentPool"
	typeStorageAccount = "azure-native:storage:StorageAccount"
	typeRegistry       = "azure-native:containerregistry:Registry"
	typeTaskRun        = "azure-native:containerregistry:TaskRun"
	typeDeployment     = "kubernetes:apps/v1:Deployment"
	typeScaledObject   = "kubernetes:keda.sh/v1alpha1:ScaledObject"
	typeScaledJob      = "kubernetes:keda.sh/v1alpha1:ScaledJob"
	typeManagedEnv     = "azure-native:app:ManagedEnvironment"
	typeContainerApp   = "azure-native:app:ContainerApp"
	typeACAJob         = "azure-native:app:Job"
)

// notRegistered is shown when the resource a setting comes from was not registered.
const notRegistered = "(no such resource)"

// reader reads inputs of the first resource of a type, tolerating absent resources and keys,
// so the plan renders whatever shape the program takes.
type reader struct{ m *pulumitest.Mocks }

func (r reader) first(typ string) *pulumitest.Resource {
	if rs := r.m.ByType(typ); len(rs) > 0 {
		return rs[0]
	}
	return nil
}

// get returns the input at path of the first resource of typ as text ("" when absent).
func (r reader) get(typ, path string) string {
	if res := r.first(typ); res != nil {
		return text(res.Input(path))
	}
	return ""
}

func onOff(v string) string {
	switch v {
	case "true":
		return "on"
	case "false", "":
		return "off"
	}
	return v
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// keySettings reads the settings a reviewer checks first from the recorded inputs (what would
// be sent), and the image source from the loaded config.
func keySettings(m *pulumitest.Mocks, cfg map[string]string, project string) []Setting {
	r := reader{m}
	var out []Setting
	add := func(name, value string) { out = append(out, Setting{name, value}) }

	add("location", orDefault(r.get(typeResourceGroup, "location"), notRegistered))

	switch {
	case r.first(typeManagedEnv) != nil:
		e := func(p string) string { return r.get(typeManagedEnv, p) }
		add("platform", "Azure Container Apps (no cluster)")
		add("environment", fmt.Sprintf("%s, workload profile %s, logs to %s, subnet %s", e("environmentName"),
			e("workloadProfiles.0.name"), e("appLogsConfiguration.destination"),
			orDefault(shortID(e("vnetConfiguration.infrastructureSubnetId")), "none")))
	case r.first(typeCluster) == nil:
		add("cluster", notRegistered)
	default:
		c := func(p string) string { return r.get(typeCluster, p) }
		add("kubernetes version", orDefault(c("kubernetesVersion"), "(not set: the AKS default at creation)"))
		add("cluster tier", c("sku.tier"))
		add("upgrade channels", fmt.Sprintf("cluster %s, node OS %s",
			orDefault(c("autoUpgradeProfile.upgradeChannel"), "(not set)"),
			orDefault(c("autoUpgradeProfile.nodeOSUpgradeChannel"), "(not set)")))
		pools := 0
		if ps, ok := r.first(typeCluster).Input("agentPoolProfiles").([]any); ok {
			pools = len(ps)
		}
		for i := 0; i < pools; i++ {
			p := func(k string) string { return c(fmt.Sprintf("agentPoolProfiles.%d.%s", i, k)) }
			add("node pool "+p("name"), fmt.Sprintf("%s, %s x %s, zones %s, autoscaler %s, taints %s",
				p("mode"), p("count"), p("vmSize"), orDefault(p("availabilityZones"), "none"),
				onOff(p("enableAutoScaling")), orDefault(p("nodeTaints"), "none")))
		}
		for _, ap := range m.ByType(typeAgentPool) {
			add("node pool "+text(ap.Input("agentPoolName")), fmt.Sprintf("AgentPool %s, %s x %s", ap.Name,
				text(ap.Input("count")), text(ap.Input("vmSize"))))
		}
		add("network", fmt.Sprintf("plugin %s, mode %s, dataplane %s, policy %s, %s",
			c("networkProfile.networkPlugin"), c("networkProfile.networkPluginMode"),
			c("networkProfile.networkDataplane"), c("networkProfile.networkPolicy"),
			orDefault(c("networkProfile.ipFamilies"), "ip families not set")))
		add("node provisioning", orDefault(c("nodeProvisioningProfile.mode"), "(not set: Manual)"))
		add("KEDA add-on", onOff(c("workloadAutoScalerProfile.keda.enabled")))
		add("workload identity", fmt.Sprintf("%s (OIDC issuer %s)",
			onOff(c("securityProfile.workloadIdentity.enabled")), onOff(c("oidcIssuerProfile.enabled"))))
	}

	if acct := r.first(typeStorageAccount); acct == nil {
		add("storage", notRegistered)
	} else {
		s := func(p string) string { return text(acct.Input(p)) }
		rules, _ := acct.Input("networkRuleSet.ipRules").([]any)
		add("storage", fmt.Sprintf("%s %s %s", s("accountName"), s("kind"), s("sku.name")))
		add("storage access", fmt.Sprintf("publicNetworkAccess %s, firewall default %s, %d operator IP rule(s), shared keys %s",
			s("publicNetworkAccess"), s("networkRuleSet.defaultAction"), len(rules), onOff(s("allowSharedKeyAccess"))))
	}

	if reg := r.first(typeRegistry); reg == nil {
		add("registry", notRegistered)
	} else {
		add("registry", fmt.Sprintf("%s %s, admin user %s", text(reg.Input("registryName")), text(reg.Input("sku.name")),
			onOff(text(reg.Input("adminUserEnabled")))))
	}

	add("consumer image", consumerImage(r))
	out = append(out, imageSource(m, cfg, project)...)

	switch {
	case r.first(typeContainerApp) != nil:
		a := func(p string) string { return r.get(typeContainerApp, p) }
		add("scale mode", fmt.Sprintf("Container App %s, %s scale rule %q (identity %s)", a("containerAppName"),
			a("template.scale.rules.0.custom.type"), a("template.scale.rules.0.name"), shortID(a("template.scale.rules.0.custom.identity"))))
		add("queueLength", fmt.Sprintf("%s per replica (activation %s)", a("template.scale.rules.0.custom.metadata.queueLength"),
			orDefault(a("template.scale.rules.0.custom.metadata.activationQueueLength"), "not set")))
		add("replicas", fmt.Sprintf("min %s, max %s, polling %ss, cooldown %ss", a("template.scale.minReplicas"), a("template.scale.maxReplicas"),
			a("template.scale.pollingInterval"), a("template.scale.cooldownPeriod")))
		add("container size", fmt.Sprintf("%s vCPU / %s", a("template.containers.0.resources.cpu"), a("template.containers.0.resources.memory")))
	case r.first(typeACAJob) != nil:
		j := func(p string) string { return r.get(typeACAJob, p) }
		rule := "configuration.eventTriggerConfig.scale.rules.0."
		add("scale mode", fmt.Sprintf("Container Apps job %s (%s trigger), %s scale rule %q (identity %s)", j("jobName"),
			j("configuration.triggerType"), j(rule+"type"), j(rule+"name"), shortID(j(rule+"identity"))))
		add("queueLength", fmt.Sprintf("%s per execution (activation %s)", j(rule+"metadata.queueLength"),
			orDefault(j(rule+"metadata.activationQueueLength"), "not set")))
		add("replicas", fmt.Sprintf("executions min %s, max %s, polling %ss", j("configuration.eventTriggerConfig.scale.minExecutions"),
			j("configuration.eventTriggerConfig.scale.maxExecutions"), j("configuration.eventTriggerConfig.scale.pollingInterval")))
		add("container size", fmt.Sprintf("%s vCPU / %s", j("template.containers.0.resources.cpu"), j("template.containers.0.resources.memory")))
	case r.first(typeScaledObject) != nil:
		so := func(p string) string { return r.get(typeScaledObject, p) }
		add("scale mode", fmt.Sprintf("ScaledObject %s -> %s %s", so("metadata.name"),
			so("spec.scaleTargetRef.kind"), so("spec.scaleTargetRef.name")))
		add("queueLength", fmt.Sprintf("%s per replica (activation %s)", so("spec.triggers.0.metadata.queueLength"),
			orDefault(so("spec.triggers.0.metadata.activationQueueLength"), "not set")))
		add("replicas", fmt.Sprintf("min %s, max %s", so("spec.minReplicaCount"), so("spec.maxReplicaCount")))
		hpa := func(dir string) string {
			b := "spec.advanced.horizontalPodAutoscalerConfig.behavior." + dir
			var policies []string
			for i := 0; so(fmt.Sprintf("%s.policies.%d.type", b, i)) != ""; i++ {
				p := func(k string) string { return so(fmt.Sprintf("%s.policies.%d.%s", b, i, k)) }
				unit := ""
				if p("type") == "Percent" {
					unit = "%"
				} else {
					unit = " pods"
				}
				policies = append(policies, fmt.Sprintf("%s%s/%ss", p("value"), unit, p("periodSeconds")))
			}
			return fmt.Sprintf("%s window %ss, %s (%s)", dir, orDefault(so(b+".stabilizationWindowSeconds"), "default"),
				orDefault(strings.Join(policies, " or "), "default policies"), orDefault(so(b+".selectPolicy"), "Max"))
		}
		add("HPA behaviour", hpa("scaleUp")+"; "+hpa("scaleDown")+"; cooldown to 0 "+so("spec.cooldownPeriod")+"s")
	case r.first(typeScaledJob) != nil:
		sj := func(p string) string { return r.get(typeScaledJob, p) }
		add("scale mode", "ScaledJob "+sj("metadata.name"))
		add("queueLength", fmt.Sprintf("%s per job (activation %s)", sj("spec.triggers.0.metadata.queueLength"),
			orDefault(sj("spec.triggers.0.metadata.activationQueueLength"), "not set")))
		add("replicas", fmt.Sprintf("min %s, max %s", orDefault(sj("spec.minReplicaCount"), "0"), sj("spec.maxReplicaCount")))
	default:
		add("scale mode", "(no KEDA ScaledObject or ScaledJob)")
	}
	if d := drainTimes(r); d != "" {
		add("drain (estimated)", d)
	}

	var protected []string
	for _, res := range m.Resources() {
		if res.Protect {
			protected = append(protected, res.Name)
		}
	}
	sort.Strings(protected)
	add("protect", orDefault(strings.Join(protected, ", "), "off (nothing protected)"))
	return out
}

// drainTimes estimates how long a backlog of 10,000 and of 1,000,000 messages takes to drain
// once the replicas (or jobs) run, with the stack's queueLength, maximum, concurrency and CPU:
// replicas = min(max, ceil(backlog / queueLength)), each at components.ReplicaRate, all
// together at most the queue's target (2,000 msg/s). KEDA's polling and pod starts come on top.
func drainTimes(r reader) string {
	var ql, maxN, conc, cpu string
	var env []any
	switch {
	case r.first(typeContainerApp) != nil:
		a := func(p string) string { return r.get(typeContainerApp, p) }
		ql, maxN, cpu = a("template.scale.rules.0.custom.metadata.queueLength"), a("template.scale.maxReplicas"), a("template.containers.0.resources.cpu")
		env, _ = r.first(typeContainerApp).Input("template.containers.0.env").([]any)
	case r.first(typeACAJob) != nil:
		j := func(p string) string { return r.get(typeACAJob, p) }
		ql, maxN, cpu = j("configuration.eventTriggerConfig.scale.rules.0.metadata.queueLength"),
			j("configuration.eventTriggerConfig.scale.maxExecutions"), j("template.containers.0.resources.cpu")
		env, _ = r.first(typeACAJob).Input("template.containers.0.env").([]any)
	case r.first(typeScaledObject) != nil:
		ql, maxN = r.get(typeScaledObject, "spec.triggers.0.metadata.queueLength"), r.get(typeScaledObject, "spec.maxReplicaCount")
		cpu = r.get(typeDeployment, "spec.template.spec.containers.0.resources.limits.cpu")
		if d := r.first(typeDeployment); d != nil {
			env, _ = d.Input("spec.template.spec.containers.0.env").([]any)
		}
	case r.first(typeScaledJob) != nil:
		ql, maxN = r.get(typeScaledJob, "spec.triggers.0.metadata.queueLength"), r.get(typeScaledJob, "spec.maxReplicaCount")
		cpu = r.get(typeScaledJob, "spec.jobTargetRef.template.spec.containers.0.resources.limits.cpu")
		env, _ = r.first(typeScaledJob).Input("spec.jobTargetRef.template.spec.containers.0.env").([]any)
	default:
		return ""
	}
	for _, e := range env {
		if m, ok := e.(map[string]any); ok && m["name"] == "CONSUMER_CONCURRENCY" {
			conc = text(m["value"])
		}
	}
	q, err1 := strconv.Atoi(ql)
	n, err2 := strconv.Atoi(maxN)
	c, err3 := strconv.Atoi(conc)
	lim, err4 := resource.ParseQuantity(cpu)
	if errors.Join(err1, err2, err3, err4) != nil || q < 1 || n < 1 {
		return fmt.Sprintf("(not estimated: queueLength %q, max %q, CONSUMER_CONCURRENCY %q, cpu %q)", ql, maxN, conc, cpu)
	}
	rate := components.ReplicaRate(c, lim.MilliValue())
	var parts []string
	for _, backlog := range []int{10_000, 1_000_000} {
		k := min(n, (backlog+q-1)/q)
		total := min(float64(k)*rate, components.AzureQueueMessagesPerSecond)
		secs := float64(backlog) / total
		parts = append(parts, fmt.Sprintf("%s msgs: %d x %.0f msg/s = %.0f msg/s -> %s", thousands(backlog), k, rate, total,
			(time.Duration(secs*float64(time.Second))).Round(time.Second)))
	}
	return strings.Join(parts, "; ") + fmt.Sprintf(" (per replica: CONSUMER_CONCURRENCY %d, cpu %s, storage 10 ms away; at most %d msg/s, the queue's target; KEDA's polling and pod starts not included)",
		c, cpu, components.AzureQueueMessagesPerSecond)
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// consumerImage is the image the consumer runs, from the Deployment, ScaledJob, Container App or job.
func consumerImage(r reader) string {
	if img := r.get(typeDeployment, "spec.template.spec.containers.0.image"); img != "" {
		return img
	}
	if img := r.get(typeScaledJob, "spec.jobTargetRef.template.spec.containers.0.image"); img != "" {
		return img
	}
	for _, typ := range []string{typeContainerApp, typeACAJob} {
		if img := r.get(typ, "template.containers.0.image"); img != "" {
			return img
		}
	}
	return "(no consumer Deployment, ScaledJob, Container App or job)"
}

// imageSource describes how the image is produced: the ACR task run's inputs when the stack
// builds it, and the imageSource* config keys, read generically so keys show up as they are
// added.
func imageSource(m *pulumitest.Mocks, cfg map[string]string, project string) []Setting {
	runs := m.ByType(typeTaskRun)
	if len(runs) == 0 {
		return []Setting{{"image build", "none (no ACR task run): the pods pull a prebuilt image"}}
	}
	var out []Setting
	for _, run := range runs {
		out = append(out,
			Setting{"image build", fmt.Sprintf("ACR task run %s -> %s", run.Name, text(run.Input("runRequest.imageNames")))},
			Setting{"  source", text(run.Input("runRequest.sourceLocation"))})
	}
	var keys []string
	for k := range cfg {
		if strings.HasPrefix(k, project+":imageSource") && cfg[k] != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, Setting{"  " + strings.TrimPrefix(k, project+":"), cfg[k]})
	}
	return out
}

// renderSettings writes the settings as an aligned two-column list.
func renderSettings(b *bytes.Buffer, ss []Setting) {
	w := 0
	for _, s := range ss {
		if len(s.Name) > w {
			w = len(s.Name)
		}
	}
	for _, s := range ss {
		fmt.Fprintf(b, "  %-*s  %s\n", w, s.Name, s.Value)
	}
}
