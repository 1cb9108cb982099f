// Package infra holds the Azure side of the stack: the typed configuration, the naming scheme,
// the composition of the Azure components and the stack outputs.
package infra

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/internal/suggest"
)

// Project is the Pulumi project name; config keys live in its namespace ("aks-edw:prefix").
const Project = "aks-edw"

// ConsumerImageRepository is the consumer image's repository in the stack's registry.
const ConsumerImageRepository = "aws2azure/aqs-consumer"

// Config is the whole stack's configuration, loaded once by LoadConfig. The json tag of every
// field is its config key; Pulumi.yaml declares each with its type, description and default.
type Config struct {
	// Prefix goes into every resource name (rg-<prefix>-<suffix>, stor<prefix><suffix>, ...).
	Prefix string `json:"prefix"`
	// Location is the Azure region of every resource.
	Location string `json:"location"`
	// Tags are added to every Azure resource, with owner=<prefix> unless set and environment=<stack>.
	Tags map[string]string `json:"tags"`
	// Protect marks the storage account, registry and cluster as protected (prod).
	Protect bool `json:"protect"`
	// Platform is where the consumer runs: aks (an AKS cluster with NAP and the KEDA add-on) or
	// containerapps (a Container Apps environment, whose built-in KEDA scales it). Keys tagged
	// platform:"aks" mean something only on AKS and are refused with containerapps.
	Platform string `json:"platform"`

	// StorageAccountName overrides the derived stor<prefix><suffix> name when set.
	StorageAccountName string `json:"storageAccountName"`
	// StorageSku is the storage account SKU.
	StorageSku string `json:"storageSku"`
	// QueueName is the queue the producer writes and the consumer reads.
	QueueName string `json:"queueName"`
	// TableName is the table the consumer writes records to.
	TableName string `json:"tableName"`
	// StoragePublicNetworkAccess opens the storage firewall to every network (throwaway dev only).
	StoragePublicNetworkAccess bool `json:"storagePublicNetworkAccess"`
	// OperatorIPRanges are the public IPs or CIDRs of operator workstations admitted by the
	// storage firewall (the producer runs there).
	OperatorIPRanges []string `json:"operatorIpRanges"`
	// GrantDeployerQueueAccess gives the deploying principal Storage Queue Data Contributor on
	// the queue, so an operator can run the producer with their own Entra identity.
	GrantDeployerQueueAccess bool `json:"grantDeployerQueueAccess"`
	// GrantDeployerVerifyAccess gives the deploying principal what `verify` needs besides the
	// queue: Storage Table Data Contributor on the table (it reads and then deletes the entities
	// of its burst) and Storage Queue Data Reader on the poison queue (it peeks it).
	GrantDeployerVerifyAccess bool `json:"grantDeployerVerifyAccess"`
	// GrantDeployerRedriveAccess gives the deploying principal what `redrive` needs: Storage
	// Queue Data Contributor on the poison queue (read every message, hide it while it is
	// moved, delete it) and Storage Queue Data Message Sender on the queue (put it back).
	GrantDeployerRedriveAccess bool `json:"grantDeployerRedriveAccess"`
	// DataOperators are the users, groups and service principals that get the grantDeployer*
	// data roles, whoever runs `pulumi up`. Empty: the deploying principal gets them, and a
	// different principal running `up` takes them over (DataOperatorsUnsetWarning).
	DataOperators []Principal `json:"dataOperators"`
	// DeployerPrincipalType is the principal type of the deploying identity (User or ServicePrincipal).
	DeployerPrincipalType string `json:"deployerPrincipalType"`

	// RegistrySku is the container registry SKU.
	RegistrySku string `json:"registrySku"`

	// VnetAddressSpace is the virtual network's address space.
	VnetAddressSpace string `json:"vnetAddressSpace"`
	// AksSubnetPrefix is the AKS node subnet, inside VnetAddressSpace.
	AksSubnetPrefix string `json:"aksSubnetPrefix" platform:"aks"`
	// ContainerAppsSubnetPrefix is the Container Apps environment's infrastructure subnet, inside
	// VnetAddressSpace, delegated to Microsoft.App/environments (a /27 or larger).
	ContainerAppsSubnetPrefix string `json:"containerAppsSubnetPrefix" platform:"containerapps"`
	// PodCidr is the overlay pod address range (must not overlap the VNet).
	PodCidr string `json:"podCidr" platform:"aks"`
	// ServiceCidr is the Kubernetes service address range (must not overlap the VNet or pods).
	ServiceCidr string `json:"serviceCidr" platform:"aks"`
	// DNSServiceIP is the cluster DNS service address, inside ServiceCidr.
	DNSServiceIP string `json:"dnsServiceIp" platform:"aks"`
	// APIServerAuthorizedIPRanges restricts the Kubernetes API server to these CIDRs (empty: open).
	APIServerAuthorizedIPRanges []string `json:"apiServerAuthorizedIpRanges" platform:"aks"`

	// KubernetesVersion is the cluster's Kubernetes version (empty: the AKS default at creation).
	KubernetesVersion string `json:"kubernetesVersion" platform:"aks"`
	// SystemNodeCount is the fixed size of the inline system pool.
	SystemNodeCount int `json:"systemNodeCount" platform:"aks"`
	// SystemNodeVMSize is the VM size of the system pool.
	SystemNodeVMSize string `json:"systemNodeVmSize" platform:"aks"`
	// SystemNodeZones are the availability zones of the system pool (empty: no zones).
	SystemNodeZones []string `json:"systemNodeZones" platform:"aks"`
	// UpgradeChannel is the cluster auto-upgrade channel.
	UpgradeChannel string `json:"upgradeChannel" platform:"aks"`
	// NodeOSUpgradeChannel is the node OS upgrade channel.
	NodeOSUpgradeChannel string `json:"nodeOsUpgradeChannel" platform:"aks"`
	// LogRetentionDays is the Log Analytics workspace retention.
	LogRetentionDays int `json:"logRetentionDays"`
	// ClusterTier is the AKS pricing tier (Free, or Standard for the uptime SLA).
	ClusterTier string `json:"clusterTier" platform:"aks"`
	// LocalAccounts keeps AKS's local accounts (static admin credential). False (both stacks):
	// Entra-only access with Azure RBAC for Kubernetes; ClusterAdmins (or, unset, the deployer)
	// get AKS RBAC Cluster Admin on the cluster, and kubeconfigs use kubelogin.
	LocalAccounts bool `json:"localAccounts" platform:"aks"`
	// ClusterAdmins are the users, groups and service principals that get Azure Kubernetes
	// Service RBAC Cluster Admin on an Entra-only cluster, whoever runs `pulumi up`. Empty: the
	// deploying principal gets it, and a different principal running `up` takes it over
	// (ClusterAdminsUnsetWarning).
	ClusterAdmins []Principal `json:"clusterAdmins" platform:"aks"`
	// MaintenanceWindow is the weekly window for AKS's auto-upgrades and node OS upgrades (the
	// zero value, `{}`: no window, AKS upgrades whenever its channel has something).
	MaintenanceWindow components.MaintenanceWindow `json:"maintenanceWindow" platform:"aks"`

	// ManagedPrometheus turns on Azure Monitor managed Prometheus: the cluster's metrics add-on,
	// an Azure Monitor workspace with its data collection endpoint, rule and association, and
	// a Prometheus rule group with the workload's alerts (app/observability).
	ManagedPrometheus bool `json:"managedPrometheus" platform:"aks"`
	// AlertEmails are the e-mail receivers of the alerts' action group (only with
	// ManagedPrometheus; empty: the alerts fire without notifying anyone).
	AlertEmails []string `json:"alertEmails" platform:"aks"`
	// BacklogAlertFor is how long the queue backlog may stay above what KEDA scales for before
	// the backlog alert fires, a Go duration from 1m to 24h.
	BacklogAlertFor string `json:"backlogAlertFor" platform:"aks"`

	// ImageSourceRepository is the git repository (https) the consumer image is built from when
	// the image key is empty; required then (no default: only the user knows where their copy of
	// this project lives).
	ImageSourceRepository string `json:"imageSourceRepository"`
	// ImageSourceRef is the commit (full SHA), branch or tag to build; the image tag derives
	// from it, so CI sets it to the commit being deployed.
	ImageSourceRef string `json:"imageSourceRef"`
	// ImageSourceFolder is the build context folder inside the repository (empty: the root).
	ImageSourceFolder string `json:"imageSourceFolder"`
	// ImageDockerfile is the Dockerfile path relative to the build context.
	ImageDockerfile string `json:"imageDockerfile"`
	// ImageBuildTimeoutSeconds bounds the ACR build run.
	ImageBuildTimeoutSeconds int `json:"imageBuildTimeoutSeconds"`

	// Consumer holds the Kubernetes workload's settings; each field is a top-level config key.
	Consumer components.ConsumerSettings `json:"-"`
}

// Principal is an Entra principal a role is assigned to.
type Principal struct {
	// ObjectID is its object id (a GUID; for an app, its service principal's object id, not the
	// application id).
	ObjectID string `json:"objectId"`
	// Type is User, Group or ServicePrincipal (role assignments to a new principal need it).
	Type string `json:"type"`
}

// DefaultConfig returns the defaults; Pulumi.yaml declares the same values (a test checks it).
func DefaultConfig() Config {
	return Config{
		Prefix:                      "aksdemo",
		Platform:                    PlatformAKS,
		Location:                    "westus3",
		Tags:                        map[string]string{},
		StorageSku:                  "Standard_LRS",
		QueueName:                   "aws2azmsgs",
		TableName:                   "aws2azpmts",
		OperatorIPRanges:            []string{},
		DeployerPrincipalType:       "User",
		RegistrySku:                 "Basic",
		VnetAddressSpace:            "10.224.0.0/12",
		AksSubnetPrefix:             "10.224.0.0/16",
		ContainerAppsSubnetPrefix:   "10.225.0.0/24",
		PodCidr:                     "10.244.0.0/16",
		ServiceCidr:                 "10.0.0.0/16",
		DNSServiceIP:                "10.0.0.10",
		APIServerAuthorizedIPRanges: []string{},
		SystemNodeCount:             3,
		SystemNodeVMSize:            "Standard_D4ds_v5",
		SystemNodeZones:             []string{},
		UpgradeChannel:              "patch",
		NodeOSUpgradeChannel:        "NodeImage",
		LogRetentionDays:            30,
		ClusterTier:                 "Free",
		LocalAccounts:               false,
		ClusterAdmins:               []Principal{},
		DataOperators:               []Principal{},
		ManagedPrometheus:           false,
		AlertEmails:                 []string{},
		BacklogAlertFor:             "15m",
		ImageSourceRepository:       "",
		ImageSourceRef:              "main",
		ImageSourceFolder:           "",
		ImageDockerfile:             "Dockerfile",
		ImageBuildTimeoutSeconds:    components.DefaultImageBuildTimeoutSeconds,
		Consumer:                    components.DefaultConsumerSettings(),
	}
}

// LoadConfig reads every key with the Try* semantics (never panics), applies the defaults,
// and validates; every problem is reported at once, each naming its key.
func LoadConfig(ctx *pulumi.Context) (Config, error) {
	cfg := DefaultConfig()
	get := func(key string) (string, bool) {
		v, err := config.Try(ctx, Project+":"+key)
		return v, err == nil
	}
	// An undeclared key is most often a typo of a real one, whose value is then silently the
	// default: the engine does not reject it (docs/cloud-notes.md), so the program does.
	errs := UndeclaredKeys(engineConfigKeys())
	failed := map[string]bool{}
	errs = append(errs, loadFields(&cfg, get, failed)...)
	errs = append(errs, loadFields(&cfg.Consumer, get, failed)...)
	cfg.Tags = cfg.EffectiveTags(ctx.Stack())
	// A value that did not parse keeps its default; the other keys are still checked, so one
	// type error does not hide the rest, but rules about the unparsed key would only confuse.
	for _, e := range cfg.problems() {
		if !failed[problemKey(e)] {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return cfg, joinConfigErrors(errs)
	}
	return cfg, nil
}

// engineConfigKeys returns the config keys the engine passed the program: the keys of the
// PULUMI_CONFIG JSON object the Go SDK itself reads its configuration from (pulumi.EnvConfig).
// It is empty where the program runs without it (mocks, inline Automation API programs).
func engineConfigKeys() []string {
	raw := os.Getenv(pulumi.EnvConfig)
	if raw == "" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil // the SDK reports a malformed PULUMI_CONFIG itself
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// UndeclaredKeys returns one error per key in the project's namespace ("aks-edw:<name>") that is
// not a config key of this program, suggesting the key the user most likely meant.
func UndeclaredKeys(keys []string) []error {
	known := ConfigKeys()
	var errs []error
	for _, k := range keys {
		name, ok := strings.CutPrefix(k, Project+":")
		if !ok || slices.Contains(known, name) {
			continue
		}
		msg := "is not a config key of this project (Pulumi.yaml declares every key)"
		if s, ok := suggest.Closest(name, known); ok {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		errs = append(errs, ConfigError{Key: name, Msg: msg})
	}
	return errs
}

var problemKeyRe = regexp.MustCompile(`^` + Project + `:([A-Za-z0-9]+)`)

// problemKey is the config key a validation problem names ("" when none).
func problemKey(err error) string {
	var ce ConfigError
	if errors.As(err, &ce) {
		return ce.Key
	}
	if m := problemKeyRe.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return ""
}

// ImageSource is the git context the consumer image is built from.
func (c Config) ImageSource() components.ImageSource {
	return components.ImageSource{
		Repository: c.ImageSourceRepository,
		Ref:        c.ImageSourceRef,
		Folder:     c.ImageSourceFolder,
		Dockerfile: c.ImageDockerfile,
	}
}

// BuildsImage reports whether the stack builds the consumer image (no prebuilt image is set).
func (c Config) BuildsImage() bool { return c.Consumer.Image == "" }

// EffectiveTags returns the configured tags plus owner=<prefix> (unless set) and environment=<stack>.
func (c Config) EffectiveTags(stack string) map[string]string {
	tags := map[string]string{}
	for k, v := range c.Tags {
		tags[k] = v
	}
	if _, ok := tags["owner"]; !ok {
		tags["owner"] = c.Prefix
	}
	tags["environment"] = stack
	return tags
}

// ConfigKeys lists every config key (json tag) of Config and ConsumerSettings, in field order.
func ConfigKeys() []string {
	var keys []string
	for _, t := range []reflect.Type{reflect.TypeOf(Config{}), reflect.TypeOf(components.ConsumerSettings{})} {
		for i := 0; i < t.NumField(); i++ {
			if k := jsonKey(t.Field(i)); k != "" {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

func jsonKey(f reflect.StructField) string {
	tag := strings.Split(f.Tag.Get("json"), ",")[0]
	if tag == "-" || !f.IsExported() {
		return ""
	}
	return tag
}

// loadFields sets each json-tagged field of the struct that ptr points to from get(key),
// parsing the value the way the Pulumi CLI stores it (numbers and booleans as text, arrays and
// objects as JSON).
// The keys whose value did not parse are added to failed.
func loadFields(ptr any, get func(key string) (string, bool), failed map[string]bool) []error {
	v := reflect.ValueOf(ptr).Elem()
	t := v.Type()
	var errs []error
	for i := 0; i < t.NumField(); i++ {
		key := jsonKey(t.Field(i))
		if key == "" {
			continue
		}
		raw, ok := get(key)
		if !ok {
			continue
		}
		if err := setField(v.Field(i), raw); err != nil {
			errs = append(errs, ConfigError{Key: key, Msg: err.Error()})
			failed[key] = true
		}
	}
	return errs
}

func setField(f reflect.Value, raw string) error {
	switch f.Kind() {
	case reflect.String:
		f.SetString(raw)
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("must be an integer, got %q", raw)
		}
		f.SetInt(int64(n))
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", raw)
		}
		f.SetBool(b)
	case reflect.Struct:
		p := reflect.New(f.Type())
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p.Interface()); err != nil {
			return fmt.Errorf("must be a JSON object with the keys %s, got %q: %v", strings.Join(jsonKeys(f.Type()), ", "), raw, err)
		}
		f.Set(p.Elem())
	case reflect.Slice, reflect.Map:
		p := reflect.New(f.Type())
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields() // an element's misspelt key (clusterAdmins' objectId) is an error
		if err := dec.Decode(p.Interface()); err != nil {
			return fmt.Errorf("must be a JSON %s of %s, got %q: %v", kindWord(f.Kind()), f.Type().Elem(), raw, err)
		}
		f.Set(p.Elem())
	default:
		return fmt.Errorf("unsupported config field kind %s", f.Kind())
	}
	return nil
}

// jsonKeys lists the JSON keys of a struct type's fields.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := jsonKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func kindWord(k reflect.Kind) string {
	if k == reflect.Map {
		return "object"
	}
	return "array"
}
