// Package pulumitest is the project's one Pulumi mock monitor: it records every resource the
// program registers (type, name, inputs and the options sent over RegisterResource) and fills in
// the outputs Azure would compute, so tests can run the real program and assert on what
// `pulumi up` would send to the providers.
package pulumitest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Well-known values the mocks return, so tests can compare against them.
const (
	SubscriptionID = "00000000-0000-0000-0000-000000000001"
	TenantID       = "00000000-0000-0000-0000-00000000000t"
	// DeployerObjectID is the object id getClientConfig reports for the deploying principal.
	DeployerObjectID = "00000000-0000-0000-0000-0000000000de"
	// RandomResult is what every random.RandomString resolves to.
	RandomResult = "x7k2p9"
	// ImageSourceRepository is the git repository tests and the offline plan build the consumer
	// image from (imageSourceRepository has no default; a reserved example.com host, RFC 2606).
	ImageSourceRepository = "https://git.example.com/your-org/aks-edw.git"
)

// Resource is one registered resource as the engine would have seen it.
type Resource struct {
	Type    string
	Name    string
	URN     string
	ID      string
	Custom  bool
	Inputs  resource.PropertyMap
	Outputs resource.PropertyMap

	Parent              string
	Dependencies        []string
	Provider            string
	Protect             bool
	DeletedWith         string
	DeleteBeforeReplace bool
	IgnoreChanges       []string
	// Aliases are the names (or URNs) the resource was known by before.
	Aliases []string
	// CreateTimeout and UpdateTimeout are the customTimeouts sent ("" when none).
	CreateTimeout, UpdateTimeout string
	// Registered is when the program registered the resource (the engine would then create
	// it): tests compare it with what a fake API server saw.
	Registered time.Time
}

// Input returns the input at a dotted path ("networkRuleSet.defaultAction", "a.0.b", with `\.`
// for a dot inside a key) as a plain
// Go value (string, float64, bool, []any, map[string]any), or nil when absent.
func (r *Resource) Input(path string) any {
	return lookup(r.Inputs.Mappable(), path)
}

// Output returns the output at a dotted path, like Input.
func (r *Resource) Output(path string) any {
	return lookup(r.Outputs.Mappable(), path)
}

// InputIsSecret reports whether the top-level input key was sent as a secret.
func (r *Resource) InputIsSecret(key string) bool {
	v, ok := r.Inputs[resource.PropertyKey(key)]
	return ok && v.ContainsSecrets()
}

func lookup(v any, path string) any {
	if path == "" {
		return v
	}
	// `\.` escapes a dot inside a key (annotation and label names).
	for _, part := range strings.Split(strings.ReplaceAll(path, `\.`, "\x00"), ".") {
		part = strings.ReplaceAll(part, "\x00", ".")
		switch node := v.(type) {
		case map[string]any:
			v = node[part]
		case []any:
			var i int
			if _, err := fmt.Sscanf(part, "%d", &i); err != nil || i < 0 || i >= len(node) {
				return nil
			}
			v = node[i]
		default:
			return nil
		}
	}
	return v
}

// Mocks implements pulumi.MockResourceMonitor and records everything.
type Mocks struct {
	project string
	stack   string
	// kubeconfig, when set, is what the cluster credentials invoke returns instead of Kubeconfig().
	kubeconfig string
	// deployer, when set, is the object id getClientConfig reports instead of DeployerObjectID.
	deployer string
	// roleCreatedOn, when set, is every role assignment's createdOn instead of RoleCreatedOn.
	roleCreatedOn string
	mu            sync.Mutex
	resources     []*Resource
	calls         []pulumi.MockCallArgs
}

// New returns an empty recorder for one project and stack.
func New(project, stack string) *Mocks { return &Mocks{project: project, stack: stack} }

// RoleCreatedOn is every role assignment's createdOn under the mocks unless SetRoleCreatedOn: long
// ago, so nothing waits for it to propagate.
const RoleCreatedOn = "2026-01-02T03:04:05.6789012Z"

// SetRoleCreatedOn makes every role assignment report t as its createdOn (a grant made now).
func (m *Mocks) SetRoleCreatedOn(t time.Time) { m.roleCreatedOn = t.UTC().Format(time.RFC3339Nano) }

// SetDeployer makes getClientConfig report objectID as the deploying principal (another
// person or pipeline running `pulumi up`).
func (m *Mocks) SetDeployer(objectID string) { m.deployer = objectID }

// urn computes the URN exactly as the SDK's mock monitor does.
func (m *Mocks) urn(parent, typ, name string) string {
	parentType := tokens.Type("")
	if p := resource.URN(parent); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	return string(resource.NewURN(tokens.QName(m.stack), tokens.PackageName(m.project), parentType, tokens.Type(typ), name))
}

// physicalNameKeys are the azure-native inputs that carry a resource's Azure name.
var physicalNameKeys = []string{
	// Child resources first: their inputs also name the parent (accountName, resourceName, ...).
	"queueName", "tableName", "federatedIdentityCredentialResourceName", "subnetName",
	"roleAssignmentName", "agentPoolName", "runId", "taskRunName", "dataCollectionRuleName", "associationName",
	"containerAppName", "jobName", "environmentName",
	"resourceGroupName", // only for ResourceGroup itself, see physicalName
	"accountName", "registryName", "resourceName", "workspaceName", "virtualNetworkName",
}

func physicalName(typ, logical string, in map[string]any) string {
	for _, k := range physicalNameKeys {
		if k == "resourceGroupName" && typ != "azure-native:resources:ResourceGroup" {
			continue
		}
		if s, ok := in[k].(string); ok && s != "" {
			return s
		}
	}
	if md, ok := in["metadata"].(map[string]any); ok {
		if s, ok := md["name"].(string); ok && s != "" {
			return s
		}
	}
	return logical
}

func armID(typ string, in map[string]any, name string) string {
	parts := strings.Split(typ, ":")
	rg, _ := in["resourceGroupName"].(string)
	if typ == "azure-native:resources:ResourceGroup" {
		return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s", SubscriptionID, name)
	}
	if typ == "azure-native:monitor:DiagnosticSetting" {
		scope, _ := in["resourceUri"].(string)
		return scope + "/providers/Microsoft.Insights/diagnosticSettings/" + name
	}
	if typ == "azure-native:monitor:DataCollectionRuleAssociation" {
		// An extension resource: its id is under the resource it is associated with.
		scope, _ := in["resourceUri"].(string)
		return scope + "/providers/Microsoft.Insights/dataCollectionRuleAssociations/" + name
	}
	if typ == "azure-native:network:Subnet" {
		vnet, _ := in["virtualNetworkName"].(string)
		return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s/subnets/%s",
			SubscriptionID, rg, vnet, name)
	}
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s/%s",
		SubscriptionID, rg, parts[1], parts[len(parts)-1], name)
}

// NewResource records the registration and returns the outputs Azure would compute.
func (m *Mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	in := args.Inputs.Mappable()
	out := map[string]any{}
	for k, v := range in {
		out[k] = v
	}
	name := physicalName(args.TypeToken, args.Name, in)
	id := name + "-id"
	if strings.HasPrefix(args.TypeToken, "azure-native:") {
		id = armID(args.TypeToken, in, name)
		out["name"] = name
		out["id"] = id
	}
	switch args.TypeToken {
	case "random:index/randomString:RandomString":
		length := 6
		if l, ok := in["length"].(float64); ok {
			length = int(l)
		}
		out["result"] = strings.Repeat(RandomResult, length/len(RandomResult)+1)[:length]
		id = out["result"].(string)
	case "azure-native:managedidentity:UserAssignedIdentity":
		out["clientId"] = "client-id-of-" + name
		out["principalId"] = "principal-id-of-" + name
		out["tenantId"] = TenantID
	case "azure-native:containerregistry:Registry":
		out["loginServer"] = name + ".azurecr.io"
	case "azure-native:authorization:RoleAssignment":
		out["createdOn"] = RoleCreatedOn
		if m.roleCreatedOn != "" {
			out["createdOn"] = m.roleCreatedOn
		}
	case "azure-native:containerservice:ManagedCluster":
		out["oidcIssuerProfile"] = map[string]any{
			"enabled":   true,
			"issuerURL": "https://westus3.oic.prod-aks.azure.com/" + TenantID + "/" + name + "/",
		}
		out["identityProfile"] = map[string]any{
			"kubeletidentity": map[string]any{
				"clientId":   "kubelet-client-id-of-" + name,
				"objectId":   "kubelet-object-id-of-" + name,
				"resourceId": "/subscriptions/" + SubscriptionID + "/resourcegroups/node-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + name + "-agentpool",
			},
		}
		out["fqdn"] = name + ".hcp.westus3.azmk8s.io"
		out["provisioningState"] = "Succeeded"
	case "azure-native:operationalinsights:Workspace":
		out["customerId"] = "workspace-customer-id-of-" + name
	case "azure-native:monitor:AzureMonitorWorkspace":
		out["metrics"] = map[string]any{
			"internalId":              "mac_0000",
			"prometheusQueryEndpoint": "https://" + name + "-abcd.westus3.prometheus.monitor.azure.com",
		}
	case "azure-native:storage:StorageAccount":
		out["primaryEndpoints"] = map[string]any{
			"queue": "https://" + name + ".queue.core.windows.net/",
			"table": "https://" + name + ".table.core.windows.net/",
		}
	}
	outputs := resource.NewPropertyMapFromMap(out)

	r := &Resource{
		Type: args.TypeToken, Name: args.Name, ID: id, Custom: args.Custom,
		Inputs: args.Inputs, Outputs: outputs, Provider: args.Provider, Registered: time.Now(),
	}
	if rpc := args.RegisterRPC; rpc != nil {
		r.URN = m.urn(rpc.GetParent(), args.TypeToken, args.Name)
		r.Parent = rpc.GetParent()
		r.Dependencies = append([]string(nil), rpc.GetDependencies()...)
		r.Protect = rpc.GetProtect()
		r.DeletedWith = rpc.GetDeletedWith()
		if ct := rpc.GetCustomTimeouts(); ct != nil {
			r.CreateTimeout, r.UpdateTimeout = ct.GetCreate(), ct.GetUpdate()
		}
		r.DeleteBeforeReplace = rpc.GetDeleteBeforeReplace()
		r.IgnoreChanges = append([]string(nil), rpc.GetIgnoreChanges()...)
		for _, a := range rpc.GetAliases() {
			name := a.GetUrn()
			if spec := a.GetSpec(); spec != nil {
				name = spec.GetName()
			}
			if name != "" {
				r.Aliases = append(r.Aliases, name)
			}
		}
	}
	m.mu.Lock()
	m.resources = append(m.resources, r)
	m.mu.Unlock()
	return id, outputs, nil
}

// Call answers the invokes the program uses and fails loudly on any other.
func (m *Mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	m.calls = append(m.calls, args)
	m.mu.Unlock()
	switch args.Token {
	case "azure-native:authorization:getClientConfig":
		deployer := DeployerObjectID
		if m.deployer != "" {
			deployer = m.deployer
		}
		return resource.NewPropertyMapFromMap(map[string]any{
			"clientId":       "deployer-client-id",
			"objectId":       deployer,
			"subscriptionId": SubscriptionID,
			"tenantId":       TenantID,
		}), nil
	case "azure-native:containerservice:listManagedClusterUserCredentials",
		"azure-native:containerservice:listManagedClusterAdminCredentials":
		return resource.NewPropertyMapFromMap(map[string]any{
			"kubeconfigs": []any{map[string]any{
				"name":  "clusterUser",
				"value": base64.StdEncoding.EncodeToString([]byte(m.clusterKubeconfig())),
			}},
		}), nil
	}
	return nil, fmt.Errorf("pulumitest: unexpected invoke %q with args %v", args.Token, args.Args.Mappable())
}

// WithKubeconfig makes the cluster credentials invoke return kubeconfig (e.g. one for an API
// server from NewAPIServer that lacks an add-on), and returns m.
func (m *Mocks) WithKubeconfig(kubeconfig string) *Mocks {
	m.kubeconfig = kubeconfig
	return m
}

func (m *Mocks) clusterKubeconfig() string {
	if m.kubeconfig != "" {
		return m.kubeconfig
	}
	return Kubeconfig()
}

// Resources returns every recorded resource in registration order.
func (m *Mocks) Resources() []*Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Resource(nil), m.resources...)
}

// Calls returns every recorded invoke.
func (m *Mocks) Calls() []pulumi.MockCallArgs {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]pulumi.MockCallArgs(nil), m.calls...)
}

// ByType returns the recorded resources of one type token, sorted by logical name.
func (m *Mocks) ByType(typ string) []*Resource {
	var out []*Resource
	for _, r := range m.Resources() {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns the one resource with this type and logical name, failing the test if absent.
func (m *Mocks) Get(t testing.TB, typ, name string) *Resource {
	t.Helper()
	for _, r := range m.Resources() {
		if r.Type == typ && r.Name == name {
			return r
		}
	}
	var names []string
	for _, r := range m.ByType(typ) {
		names = append(names, r.Name)
	}
	t.Fatalf("no %s named %q was registered (registered: %v)", typ, name, names)
	return nil
}

// One returns the single resource of a type, failing the test unless there is exactly one.
func (m *Mocks) One(t testing.TB, typ string) *Resource {
	t.Helper()
	rs := m.ByType(typ)
	if len(rs) != 1 {
		var names []string
		for _, r := range rs {
			names = append(names, r.Name)
		}
		t.Fatalf("want exactly one %s, got %d: %v", typ, len(rs), names)
	}
	return rs[0]
}

// ByURN returns the resource with this URN, or nil.
func (m *Mocks) ByURN(urn string) *Resource {
	for _, r := range m.Resources() {
		if r.URN == urn {
			return r
		}
	}
	return nil
}

// ProviderURN returns the URN part of a provider reference ("urn::id").
func ProviderURN(ref string) string {
	if i := strings.LastIndex(ref, "::"); i >= 0 {
		return ref[:i]
	}
	return ref
}

// DependsOn reports whether r lists other among its dependencies.
func (r *Resource) DependsOn(other *Resource) bool {
	for _, d := range r.Dependencies {
		if d == other.URN {
			return true
		}
	}
	return false
}

// JSON renders the resource's inputs as JSON (for strict decoding into API types).
func (r *Resource) JSON() ([]byte, error) {
	return json.Marshal(r.Inputs.Mappable())
}

// Run runs fn under these mocks with the given config (keys "project:key").
// It returns the error the program returned (nil on success).
func (m *Mocks) Run(config map[string]string, fn pulumi.RunFunc) error {
	return pulumi.RunErr(fn, pulumi.WithMocks(m.project, m.stack, m), WithConfig(config))
}

// WithConfig injects configuration the way the CLI does (RunInfo.Config), without environment
// variables, so tests can run in parallel.
func WithConfig(config map[string]string) pulumi.RunOption {
	return func(info *pulumi.RunInfo) {
		info.Config = config
	}
}

// URNName returns the logical name at the end of a URN.
func URNName(urn string) string { return resource.URN(urn).Name() }
