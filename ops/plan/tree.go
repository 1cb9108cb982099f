package plan

import (
	"bytes"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// Node is one resource in the tree: the stack at the root, then every registered resource
// under its parent.
type Node struct {
	// Type and Name are the type token and logical name ("pulumi:pulumi:Stack" for the root).
	Type, Name string
	// Resource is the recorded resource (nil for the root).
	Resource *pulumitest.Resource
	// Fields are the few inputs shown for the resource's type.
	Fields []Field
	// Options are its resource options in the inventory's syntax (protect, deleteBeforeReplace,
	// deletedWith=, provider=, dependsOn=[...]); the parent is the tree itself.
	Options []string
	// Children are the resources whose parent this is, sorted by name then type.
	Children []*Node
}

// Field is one input shown in the tree: Path=Value is exactly a line of the inventory;
// Display is how the tree shows it (ARM ids shortened, a role's name added).
type Field struct {
	Path, Value, Display string
}

// count is the number of nodes in the subtree, this one included.
func (n *Node) count() int {
	c := 1
	for _, ch := range n.Children {
		c += ch.count()
	}
	return c
}

// Walk calls fn for every node of the subtree, parents before children.
func (n *Node) Walk(fn func(*Node)) {
	fn(n)
	for _, ch := range n.Children {
		ch.Walk(fn)
	}
}

// summaryFields lists, per type, the input paths (inventory syntax) the tree shows. A path
// ending in "*" shows every input under that prefix. Types not listed show fallbackFields.
var summaryFields = map[string][]string{
	"random:index/randomString:RandomString": {"length", "upper", "special"},
	"azure-native:resources:ResourceGroup":   {"resourceGroupName", "location"},
	"azure-native:network:VirtualNetwork":    {"virtualNetworkName", "addressSpace.addressPrefixes*"},
	"azure-native:network:Subnet":            {"subnetName", "addressPrefix", "serviceEndpoints*"},
	"azure-native:storage:StorageAccount": {"accountName", "sku.name", "kind", "publicNetworkAccess",
		"networkRuleSet.defaultAction", "allowSharedKeyAccess", "minimumTlsVersion"},
	"azure-native:storage:Queue":                        {"queueName"},
	"azure-native:storage:Table":                        {"tableName"},
	"azure-native:containerregistry:Registry":           {"registryName", "sku.name", "adminUserEnabled", "anonymousPullEnabled"},
	"azure-native:containerregistry:TaskRun":            {"taskRunName", "runRequest.sourceLocation", "runRequest.dockerFilePath", "runRequest.imageNames*", "forceUpdateTag"},
	"azure-native:operationalinsights:Workspace":        {"workspaceName", "retentionInDays"},
	"azure-native:managedidentity:UserAssignedIdentity": {"resourceName"},
	"azure-native:managedidentity:FederatedIdentityCredential": {"federatedIdentityCredentialResourceName",
		"subject", "issuer", "audiences*"},
	"azure-native:authorization:RoleAssignment": {"roleDefinitionId", "scope", "principalId", "principalType"},
	"azure-native:containerservice:ManagedCluster": {"resourceName", "kubernetesVersion", "sku.tier",
		"agentPoolProfiles[0].count", "agentPoolProfiles[0].vmSize", "agentPoolProfiles[0].availabilityZones*",
		"networkProfile.networkPluginMode", "networkProfile.networkDataplane", "networkProfile.networkPolicy",
		"nodeProvisioningProfile.mode", "workloadAutoScalerProfile.keda.enabled",
		"oidcIssuerProfile.enabled", "securityProfile.workloadIdentity.enabled"},
	"azure-native:containerservice:AgentPool": {"agentPoolName", "mode", "count", "vmSize", "enableAutoScaling"},
	"pulumi:providers:kubernetes":             {"kubeconfig", "enableServerSideApply", "deleteUnreachable"},
	"kubernetes:core/v1:ServiceAccount": {"metadata.namespace", "metadata.name",
		"metadata.annotations.azure.workload.identity/client-id"},
	"kubernetes:apps/v1:Deployment": {"metadata.namespace", "metadata.name",
		"spec.template.spec.containers[0].image", "spec.template.spec.serviceAccountName"},
	"kubernetes:keda.sh/v1alpha1:ScaledObject": {"metadata.namespace", "metadata.name", "spec.minReplicaCount",
		"spec.maxReplicaCount", "spec.triggers[0].type", "spec.triggers[0].metadata.queueLength"},
	"kubernetes:keda.sh/v1alpha1:ScaledJob": {"metadata.namespace", "metadata.name", "spec.maxReplicaCount",
		"spec.triggers[0].type", "spec.triggers[0].metadata.queueLength",
		"spec.jobTargetRef.template.spec.containers[0].image"},
	"kubernetes:keda.sh/v1alpha1:TriggerAuthentication": {"metadata.namespace", "metadata.name",
		"spec.podIdentity.provider", "spec.podIdentity.identityId"},
	"kubernetes:karpenter.sh/v1:NodePool": {"metadata.name", "spec.limits.cpu", "spec.disruption.consolidationPolicy"},
	"kubernetes:policy/v1:PodDisruptionBudget": {"metadata.namespace", "metadata.name", "spec.maxUnavailable",
		"spec.minAvailable"},
}

// fallbackFields are shown for types summaryFields does not list: the name-like inputs.
var fallbackFields = []string{"metadata.namespace", "metadata.name", "name", "resourceName", "accountName",
	"registryName", "sku.name", "location"}

// roleNames names the built-in roles the stack assigns.
var roleNames = map[string]string{
	components.RoleAcrPull:                     "AcrPull",
	components.RoleStorageQueueDataContributor: "Storage Queue Data Contributor",
	components.RoleStorageTableDataContributor: "Storage Table Data Contributor",
	components.RoleStorageQueueDataReader:      "Storage Queue Data Reader",
	components.RoleNetworkContributor:          "Network Contributor",
	components.RoleAKSRBACClusterAdmin:         "Azure Kubernetes Service RBAC Cluster Admin",
}

// fieldsFor picks the summary fields of a resource from its inventory lines.
func fieldsFor(r *pulumitest.Resource) []Field {
	want, ok := summaryFields[r.Type]
	if !ok {
		if !r.Custom || len(r.Inputs) == 0 {
			return nil // component resources: their children carry the settings
		}
		want = fallbackFields
	}
	vals, paths := flatInputs(r)
	var out []Field
	add := func(p string) {
		out = append(out, Field{Path: p, Value: vals[p], Display: display(r.Type, p, vals[p])})
	}
	for _, w := range want {
		if prefix, ok := strings.CutSuffix(w, "*"); ok {
			for _, p := range paths {
				if strings.HasPrefix(p, prefix) {
					add(p)
				}
			}
			continue
		}
		if _, ok := vals[w]; ok {
			add(w)
		}
	}
	return out
}

// display is how the tree shows one field.
func display(typ, path, value string) string {
	d := shortID(value)
	if typ == "azure-native:authorization:RoleAssignment" && path == "roleDefinitionId" {
		guid := value[strings.LastIndex(value, "/")+1:]
		d = "…/" + guid
		if n, ok := roleNames[guid]; ok {
			d += " (" + n + ")"
		}
	}
	return path + "=" + d
}

// buildTree arranges every recorded resource under its parent, the stack at the root.
func buildTree(project, stack string, m *pulumitest.Mocks) *Node {
	root := &Node{Type: string(resource.RootStackType), Name: project + "-" + stack}
	byURN := map[string]*Node{}
	rs := m.Resources()
	for _, r := range rs {
		opts := pulumitest.Options(m, r)
		kept := opts[:0]
		for _, o := range opts {
			if !strings.HasPrefix(o, "parent=") {
				kept = append(kept, o)
			}
		}
		byURN[r.URN] = &Node{Type: r.Type, Name: r.Name, Resource: r, Fields: fieldsFor(r), Options: kept}
	}
	for _, r := range rs {
		parent := root
		if p, ok := byURN[r.Parent]; ok && r.Parent != "" {
			parent = p
		}
		parent.Children = append(parent.Children, byURN[r.URN])
	}
	root.Walk(func(n *Node) {
		sort.Slice(n.Children, func(i, j int) bool {
			a, b := n.Children[i], n.Children[j]
			if a.Name != b.Name {
				return a.Name < b.Name
			}
			return a.Type < b.Type
		})
	})
	return root
}

// detailWidth is where detail lines wrap (fields never split).
const detailWidth = 110

// renderTree writes the tree like `pulumi preview`: "type  name" per line, children indented
// with ├─ / └─, each resource's fields and options on the indented lines below it.
func renderTree(b *bytes.Buffer, root *Node) {
	b.WriteString(root.Type + "  " + root.Name + "\n")
	renderChildren(b, root, "")
}

func renderChildren(b *bytes.Buffer, n *Node, prefix string) {
	for i, ch := range n.Children {
		last := i == len(n.Children)-1
		branch, next := "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
		b.WriteString(prefix + branch + ch.Type + "  " + ch.Name + "\n")
		detail := prefix + next
		if len(ch.Children) > 0 {
			detail += "│ "
		} else {
			detail += "  "
		}
		detail += "  "
		var parts []string
		for _, f := range ch.Fields {
			parts = append(parts, f.Display)
		}
		wrap(b, detail, detail, parts, "  ")
		wrap(b, detail+"opts: ", detail+"      ", ch.Options, "  ")
		renderChildren(b, ch, prefix+next)
	}
}

// wrap writes parts separated by sep, the first line starting with prefix and the next ones
// with cont, wrapping at detailWidth (a part is never split); nothing when there are no parts.
func wrap(b *bytes.Buffer, prefix, cont string, parts []string, sep string) {
	if len(parts) == 0 {
		return
	}
	line := prefix
	width := len([]rune(prefix))
	empty := true
	for _, p := range parts {
		w := len([]rune(p))
		if !empty && width+len(sep)+w > detailWidth {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line, width, empty = cont, len([]rune(cont)), true
		}
		if !empty {
			line += sep
			width += len(sep)
		}
		line += p
		width += w
		empty = false
	}
	b.WriteString(line + "\n")
}
