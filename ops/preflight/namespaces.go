// Package preflight checks, before the first `pulumi up` on a subscription, that the Azure
// resource providers the stack needs are registered there (an unregistered one fails the deploy
// with MissingSubscriptionRegistration, pulumi/pulumi-azure-native#3479). azure-native v3 has no
// resource that registers a provider, so the check prints the `az provider register` commands
// instead. It is a tool for the person deploying, not part of the stack: nothing here runs under
// `pulumi up`.
//
// namespaces.go holds which ARM namespace each azure-native type the stack creates lives in;
// check.go asks Azure Resource Manager for their registration state; report.go turns the answer
// into lines, commands and an exit status.
package preflight

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Namespace is one ARM resource provider namespace the stack needs.
type Namespace struct {
	// Name is the namespace as ARM spells it ("Microsoft.ContainerService").
	Name string `json:"namespace"`
	// Types are the azure-native type tokens the stack creates in it: why it is needed.
	Types []string `json:"types"`
	// RegisteredByDefault is true for the namespaces Azure registers in every subscription
	// (Microsoft.Authorization, Microsoft.Resources); they are listed, not checked.
	RegisteredByDefault bool `json:"registeredByDefault,omitempty"`
}

// Why says which resource types need the namespace, for people.
func (n Namespace) Why() string {
	short := make([]string, len(n.Types))
	for i, t := range n.Types {
		short[i] = strings.TrimPrefix(t, azureNativePrefix)
	}
	return strings.Join(short, ", ")
}

const azureNativePrefix = "azure-native:"

// typeNamespaces maps every azure-native resource type the stack creates (components/, infra/)
// to the ARM namespace of its REST path. The Go SDK (v3.16.0) carries no ARM paths, so each entry
// was read from the `pulumi import` line of the type's azure-native API docs, which shows
// `/providers/Microsoft.X/...` (the same generator's docs for the other SDK languages).
//
// A type missing here still maps through its module (moduleNamespaces) when the module lives in
// one namespace; list it anyway so that Namespaces says why each namespace is needed.
var typeNamespaces = map[string]string{
	"azure-native:resources:ResourceGroup": "Microsoft.Resources", // /subscriptions/{s}/resourceGroups/{rg}

	"azure-native:containerservice:ManagedCluster":           "Microsoft.ContainerService", // .../managedClusters/{n}
	"azure-native:containerservice:MaintenanceConfiguration": "Microsoft.ContainerService", // .../managedClusters/{n}/maintenanceConfigurations/{c}

	"azure-native:containerregistry:Registry": "Microsoft.ContainerRegistry", // .../registries/{n}
	"azure-native:containerregistry:TaskRun":  "Microsoft.ContainerRegistry", // .../registries/{n}/taskRuns/{r}

	"azure-native:storage:StorageAccount": "Microsoft.Storage", // .../storageAccounts/{n}
	"azure-native:storage:Queue":          "Microsoft.Storage", // .../storageAccounts/{n}/queueServices/default/queues/{q}
	"azure-native:storage:Table":          "Microsoft.Storage", // .../storageAccounts/{n}/tableServices/default/tables/{t}

	"azure-native:managedidentity:UserAssignedIdentity":        "Microsoft.ManagedIdentity", // .../userAssignedIdentities/{n}
	"azure-native:managedidentity:FederatedIdentityCredential": "Microsoft.ManagedIdentity", // .../userAssignedIdentities/{n}/federatedIdentityCredentials/{f}

	"azure-native:network:VirtualNetwork": "Microsoft.Network", // .../virtualNetworks/{n}
	"azure-native:network:Subnet":         "Microsoft.Network", // .../virtualNetworks/{n}/subnets/{s}

	"azure-native:operationalinsights:Workspace": "Microsoft.OperationalInsights", // .../workspaces/{n}

	// The monitor module spans two namespaces: the Azure Monitor workspace is Microsoft.Monitor,
	// data collection and action groups are Microsoft.Insights.
	"azure-native:monitor:AzureMonitorWorkspace":         "Microsoft.Monitor",  // .../Microsoft.Monitor/accounts/{n}
	"azure-native:monitor:DataCollectionEndpoint":        "Microsoft.Insights", // .../Microsoft.Insights/dataCollectionEndpoints/{n}
	"azure-native:monitor:DataCollectionRule":            "Microsoft.Insights", // .../Microsoft.Insights/dataCollectionRules/{n}
	"azure-native:monitor:DataCollectionRuleAssociation": "Microsoft.Insights", // /{resourceUri}/providers/Microsoft.Insights/dataCollectionRuleAssociations/{n}
	"azure-native:monitor:ActionGroup":                   "Microsoft.Insights", // .../Microsoft.Insights/actionGroups/{n}

	"azure-native:alertsmanagement:PrometheusRuleGroup": "Microsoft.AlertsManagement", // .../prometheusRuleGroups/{n}

	// Container Apps (platform containerapps); the diagnostic setting routes its logs.
	"azure-native:app:ManagedEnvironment":    "Microsoft.App",      // .../Microsoft.App/managedEnvironments/{n}
	"azure-native:app:ContainerApp":          "Microsoft.App",      // .../Microsoft.App/containerApps/{n}
	"azure-native:app:Job":                   "Microsoft.App",      // .../Microsoft.App/jobs/{n}
	"azure-native:monitor:DiagnosticSetting": "Microsoft.Insights", // /{resourceUri}/providers/Microsoft.Insights/diagnosticSettings/{n}

	"azure-native:authorization:RoleAssignment": "Microsoft.Authorization", // /{scope}/providers/Microsoft.Authorization/roleAssignments/{n}
}

// moduleNamespaces lists every azure-native module the stack imports (go.mod) and the namespace
// all of its resource types live in, or "" when its types span several namespaces and each must
// be listed in typeNamespaces. A module missing here is an error, so a new module cannot be
// added to the stack without saying which provider it needs.
var moduleNamespaces = map[string]string{
	"alertsmanagement":    "Microsoft.AlertsManagement",
	"app":                 "Microsoft.App",
	"authorization":       "Microsoft.Authorization",
	"containerregistry":   "Microsoft.ContainerRegistry",
	"containerservice":    "Microsoft.ContainerService",
	"managedidentity":     "Microsoft.ManagedIdentity",
	"monitor":             "", // Microsoft.Insights (most types) and Microsoft.Monitor (accounts, pipelineGroups, healthmodels)
	"network":             "Microsoft.Network",
	"operationalinsights": "Microsoft.OperationalInsights",
	"resources":           "", // Microsoft.Resources, and resources:Resource creates any type in any namespace
	"storage":             "Microsoft.Storage",
}

// registeredByDefault are the namespaces Azure registers in every subscription: "Resource
// providers marked with - registered ... are automatically registered for your subscription"
// (MicrosoftDocs/azure-docs articles/azure-resource-manager/management/
// azure-services-resource-providers.md, "Registration"; both are marked there).
var registeredByDefault = map[string]bool{
	"Microsoft.Authorization": true,
	"Microsoft.Resources":     true,
}

// ErrNotAzureNative is returned by NamespaceOf for a type token of another package (random,
// kubernetes, a component).
var ErrNotAzureNative = errors.New("not an azure-native type")

// NamespaceOf returns the ARM resource provider namespace of an azure-native resource type
// token ("azure-native:monitor:AzureMonitorWorkspace" is "Microsoft.Monitor"). A versioned
// module ("monitor/v20230403") counts as its module. Errors: ErrNotAzureNative (wrapped) for other
// packages; an unknown module, or a type of a multi-namespace module that is not listed, is an
// error saying what to add to this file.
func NamespaceOf(token string) (string, error) {
	rest, ok := strings.CutPrefix(token, azureNativePrefix)
	if !ok {
		return "", fmt.Errorf("%q: %w", token, ErrNotAzureNative)
	}
	module, typ, ok := strings.Cut(rest, ":")
	if !ok || module == "" || typ == "" || strings.Contains(typ, ":") {
		return "", fmt.Errorf("%q is not an azure-native type token (azure-native:<module>:<Type>)", token)
	}
	module, _, _ = strings.Cut(module, "/")
	if ns, ok := typeNamespaces[azureNativePrefix+module+":"+typ]; ok {
		return ns, nil
	}
	ns, ok := moduleNamespaces[module]
	if !ok {
		return "", fmt.Errorf("%s: azure-native module %q is unknown to ops/preflight: add it to moduleNamespaces "+
			"and the type to typeNamespaces with the ARM namespace its `pulumi import` line shows (/providers/Microsoft.X/...)", token, module)
	}
	if ns == "" {
		return "", fmt.Errorf("%s: azure-native module %q spans several ARM namespaces: add the type to typeNamespaces in "+
			"ops/preflight with the namespace its `pulumi import` line shows (/providers/Microsoft.X/...)", token, module)
	}
	return ns, nil
}

// Namespaces are the resource provider namespaces the stack needs, sorted by name, each with the
// types that need it; the ones Azure registers by default are marked.
var Namespaces = namespaces()

func namespaces() []Namespace {
	byName := map[string]*Namespace{}
	for typ, ns := range typeNamespaces {
		n, ok := byName[ns]
		if !ok {
			n = &Namespace{Name: ns, RegisteredByDefault: registeredByDefault[ns]}
			byName[ns] = n
		}
		n.Types = append(n.Types, typ)
	}
	out := make([]Namespace, 0, len(byName))
	for _, n := range byName {
		sort.Strings(n.Types)
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the entry of Namespaces for an ARM namespace (case-insensitive, as ARM is).
func Lookup(name string) (Namespace, bool) {
	for _, n := range Namespaces {
		if strings.EqualFold(n.Name, name) {
			return n, true
		}
	}
	return Namespace{}, false
}

// NeededBy returns, for type tokens recorded from a run of the stack (resources and invokes), the
// namespaces they need with the azure-native tokens that need each. Tokens of other packages are
// skipped. The error names every azure-native token that maps to no namespace, or to one missing
// from Namespaces: the preflight would not check the provider it needs.
func NeededBy(tokens []string) (map[string][]string, error) {
	needed := map[string][]string{}
	var problems []error
	seen := map[string]bool{}
	for _, tok := range tokens {
		if seen[tok] {
			continue
		}
		seen[tok] = true
		ns, err := NamespaceOf(tok)
		switch {
		case errors.Is(err, ErrNotAzureNative):
			continue
		case err != nil:
			problems = append(problems, err)
			continue
		}
		n, ok := Lookup(ns)
		if !ok {
			problems = append(problems, fmt.Errorf("%s: its namespace %s is not in preflight.Namespaces: list the type in typeNamespaces (ops/preflight)", tok, ns))
			continue
		}
		needed[n.Name] = append(needed[n.Name], tok)
	}
	for _, toks := range needed {
		sort.Strings(toks)
	}
	return needed, errors.Join(problems...)
}
