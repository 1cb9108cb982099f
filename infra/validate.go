package infra

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/authorization/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/containerregistry/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/containerservice/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/storage/v3"

	"github.com/aks-edw/aks-edw/components"
)

// SuffixLength is the length of the random per-stack suffix in every resource name.
const SuffixLength = 6

var (
	prefixRe      = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	storageNameRe = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	queueNameRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9]|-[a-z0-9]){2,62}$`)
	tableNameRe   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)
	k8sVersionRe  = regexp.MustCompile(`^\d+\.\d+(\.\d+)?$`)
	vmSizeRe      = regexp.MustCompile(`^Standard_[A-Za-z0-9_]+$`)
	tagKeyBadRe   = regexp.MustCompile(`[<>%&\\?/]`)
	guidRe        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Allowed values of the enumerated keys: the subsets we support of the enum constants the
// azure-native SDK generates for the API versions it targets, so a value the API does not know
// cannot be listed here (it would not compile).
var (
	StorageSkus = enumStrings(storage.SkuName_Standard_LRS, storage.SkuName_Standard_GRS, storage.SkuName_Standard_RAGRS,
		storage.SkuName_Standard_ZRS, storage.SkuName_Standard_GZRS, storage.SkuName_Standard_RAGZRS)
	RegistrySkus    = enumStrings(containerregistry.SkuNameBasic, containerregistry.SkuNameStandard, containerregistry.SkuNamePremium)
	UpgradeChannels = enumStrings(containerservice.UpgradeChannelNone, containerservice.UpgradeChannelPatch,
		containerservice.UpgradeChannelStable, containerservice.UpgradeChannelRapid, containerservice.UpgradeChannel_Node_Image)
	NodeOSUpgradeChannels = enumStrings(containerservice.NodeOSUpgradeChannelNone, containerservice.NodeOSUpgradeChannelUnmanaged,
		containerservice.NodeOSUpgradeChannelNodeImage, containerservice.NodeOSUpgradeChannelSecurityPatch)
	PrincipalTypes = enumStrings(authorization.PrincipalTypeUser, authorization.PrincipalTypeServicePrincipal, authorization.PrincipalTypeGroup)
	Zones          = []string{"1", "2", "3"}
	ClusterTiers   = enumStrings(containerservice.ManagedClusterSKUTierFree, containerservice.ManagedClusterSKUTierStandard,
		containerservice.ManagedClusterSKUTierPremium)
)

// enumStrings turns SDK enum constants into the strings config values are compared with.
func enumStrings[T ~string](values ...T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

// ConfigError is one invalid config value.
type ConfigError struct {
	Key string
	Msg string
}

func (e ConfigError) Error() string { return fmt.Sprintf("%s:%s: %s", Project, e.Key, e.Msg) }

func joinConfigErrors(errs []error) error {
	return fmt.Errorf("invalid configuration (%d problem(s)):\n%w", len(errs), errors.Join(errs...))
}

// Validate checks every value and returns all problems at once, each naming its key.
func (c Config) Validate() error {
	if errs := c.problems(); len(errs) > 0 {
		return joinConfigErrors(errs)
	}
	return nil
}

// problems returns every invalid value, each naming its key.
func (c Config) problems() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, v string, allowed []string) {
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}

	// Names.
	if !prefixRe.MatchString(c.Prefix) {
		bad("prefix", "%q must start with a lowercase letter and contain only lowercase letters and digits (it is part of the storage account and registry names)", c.Prefix)
	}
	if c.StorageAccountName != "" {
		if !storageNameRe.MatchString(c.StorageAccountName) {
			bad("storageAccountName", "%q must be 3-24 lowercase letters and digits (is %d characters)", c.StorageAccountName, len(c.StorageAccountName))
		}
	} else if n := len("stor") + len(c.Prefix) + SuffixLength; n > 24 {
		bad("prefix", "%q is too long: the storage account name stor<prefix><6-char suffix> would be %d characters, Azure allows 24 (use at most %d characters, or set storageAccountName)",
			c.Prefix, n, 24-len("stor")-SuffixLength)
	}
	if n := len("acr") + len(c.Prefix) + SuffixLength; n > 50 {
		bad("prefix", "%q is too long: the registry name acr<prefix><suffix> would be %d characters, Azure allows 50", c.Prefix, n)
	}
	if strings.TrimSpace(c.Location) == "" {
		bad("location", "must name an Azure region, e.g. westus3")
	}
	if !queueNameRe.MatchString(c.QueueName) {
		bad("queueName", "%q must be 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit", c.QueueName)
	} else if len(c.QueueName)+len("-poison") > 63 {
		bad("queueName", "%q is too long: the poison queue %q would exceed 63 characters", c.QueueName, c.QueueName+"-poison")
	}
	if !tableNameRe.MatchString(c.TableName) {
		bad("tableName", "%q must be 3-63 letters and digits, starting with a letter", c.TableName)
	}
	for k, v := range c.Tags {
		if k == "" || len(k) > 512 || tagKeyBadRe.MatchString(k) {
			bad("tags", "tag name %q must be 1-512 characters without < > %% & \\ ? /", k)
		}
		if len(v) > 256 {
			bad("tags", "tag %q value is %d characters, Azure allows 256", k, len(v))
		}
	}

	// SKUs and enums.
	oneOf("storageSku", c.StorageSku, StorageSkus)
	oneOf("registrySku", c.RegistrySku, RegistrySkus)
	oneOf("upgradeChannel", c.UpgradeChannel, UpgradeChannels)
	oneOf("nodeOsUpgradeChannel", c.NodeOSUpgradeChannel, NodeOSUpgradeChannels)
	oneOf("clusterTier", c.ClusterTier, ClusterTiers)
	dataGrants := c.GrantDeployerQueueAccess || c.GrantDeployerVerifyAccess || c.GrantDeployerRedriveAccess
	if (dataGrants && len(c.DataOperators) == 0) || (!c.LocalAccounts && len(c.ClusterAdmins) == 0) {
		oneOf("deployerPrincipalType", c.DeployerPrincipalType, PrincipalTypes)
	}
	principals := func(key string, list []Principal) {
		seen := map[string]bool{}
		for i, a := range list {
			if !guidRe.MatchString(a.ObjectID) {
				bad(key, "[%d].objectId %q must be an Entra object id (a GUID such as 00000000-0000-0000-0000-000000000000)", i, a.ObjectID)
			} else if seen[strings.ToLower(a.ObjectID)] {
				bad(key, "[%d].objectId %s is listed twice", i, a.ObjectID)
			}
			seen[strings.ToLower(a.ObjectID)] = true
			if !slices.Contains(PrincipalTypes, a.Type) {
				bad(key, "[%d].type %q is not one of %s", i, a.Type, strings.Join(PrincipalTypes, ", "))
			}
		}
	}
	principals("clusterAdmins", c.ClusterAdmins)
	principals("dataOperators", c.DataOperators)
	if len(c.DataOperators) > 0 && !dataGrants {
		bad("dataOperators", "is set but grantDeployerQueueAccess, grantDeployerVerifyAccess and grantDeployerRedriveAccess are all false: there is nothing to grant them")
	}
	if c.LocalAccounts && len(c.ClusterAdmins) > 0 {
		bad("clusterAdmins", "is set but localAccounts is true: cluster admins get their role through Azure RBAC for Kubernetes, which only an Entra-only cluster (localAccounts false) has")
	}

	// Cluster.
	if c.KubernetesVersion != "" && !k8sVersionRe.MatchString(c.KubernetesVersion) {
		bad("kubernetesVersion", "%q must look like 1.33 or 1.33.2 (or be empty for the AKS default)", c.KubernetesVersion)
	} else if err := components.ValidateVersionPin(c.KubernetesVersion, c.UpgradeChannel); err != nil {
		errs = append(errs, fmt.Errorf("%s:%w", Project, err))
	}
	if c.SystemNodeCount < 1 || c.SystemNodeCount > 100 {
		bad("systemNodeCount", "%d must be between 1 and 100", c.SystemNodeCount)
	}
	if strings.TrimSpace(c.SystemNodeVMSize) == "" {
		bad("systemNodeVmSize", "must not be empty (e.g. Standard_D4ds_v5)")
	} else if !vmSizeRe.MatchString(c.SystemNodeVMSize) {
		bad("systemNodeVmSize", "%q is not an Azure VM size (e.g. Standard_D4ds_v5)", c.SystemNodeVMSize)
	}
	for _, z := range c.SystemNodeZones {
		if !slices.Contains(Zones, z) {
			bad("systemNodeZones", "zone %q is not one of 1, 2, 3", z)
		}
	}
	if c.MaintenanceWindow != (components.MaintenanceWindow{}) {
		if err := c.MaintenanceWindow.Validate(); err != nil {
			for _, e := range unjoin(err) {
				bad("maintenanceWindow", "%s", e.Error())
			}
		}
	}
	if c.LogRetentionDays < 30 || c.LogRetentionDays > 730 {
		bad("logRetentionDays", "%d must be between 30 and 730", c.LogRetentionDays)
	}

	// Monitoring (managed Prometheus and its alerts).
	errs = append(errs, c.monitoringProblems()...)

	// Network.
	vnet, vnetOK := prefixOf(c.VnetAddressSpace)
	if !vnetOK {
		bad("vnetAddressSpace", "%q is not a valid IPv4 CIDR (e.g. 10.224.0.0/12)", c.VnetAddressSpace)
	}
	subnet, subnetOK := prefixOf(c.AksSubnetPrefix)
	switch {
	case !subnetOK:
		bad("aksSubnetPrefix", "%q is not a valid IPv4 CIDR (e.g. 10.224.0.0/16)", c.AksSubnetPrefix)
	case vnetOK && !contains(vnet, subnet):
		bad("aksSubnetPrefix", "%s is not inside vnetAddressSpace %s", subnet, vnet)
	}
	pods, podsOK := prefixOf(c.PodCidr)
	if !podsOK {
		bad("podCidr", "%q is not a valid IPv4 CIDR (e.g. 10.244.0.0/16)", c.PodCidr)
	} else if vnetOK && pods.Overlaps(vnet) {
		bad("podCidr", "%s overlaps vnetAddressSpace %s", pods, vnet)
	}
	svc, svcOK := prefixOf(c.ServiceCidr)
	switch {
	case !svcOK:
		bad("serviceCidr", "%q is not a valid IPv4 CIDR (e.g. 10.0.0.0/16)", c.ServiceCidr)
	case vnetOK && svc.Overlaps(vnet):
		bad("serviceCidr", "%s overlaps vnetAddressSpace %s", svc, vnet)
	case podsOK && svc.Overlaps(pods):
		bad("serviceCidr", "%s overlaps podCidr %s", svc, pods)
	}
	if ip, err := netip.ParseAddr(c.DNSServiceIP); err != nil || !ip.Is4() {
		bad("dnsServiceIp", "%q is not an IPv4 address", c.DNSServiceIP)
	} else if svcOK && (!svc.Contains(ip) || ip == svc.Masked().Addr()) {
		bad("dnsServiceIp", "%s must be a host address inside serviceCidr %s", ip, svc)
	}
	for _, r := range c.OperatorIPRanges {
		if msg := storageIPRuleProblem(r); msg != "" {
			bad("operatorIpRanges", "%q %s", r, msg)
		} else if doc, ok := documentationRange(r); ok {
			bad("operatorIpRanges", "%q is inside %s, an RFC 5737 documentation range no real host uses: put your operators' "+
				"public egress addresses here (e.g. what `curl -s https://ifconfig.me` prints on their network), or leave the list empty", r, doc)
		}
	}
	for _, r := range c.APIServerAuthorizedIPRanges {
		if _, ok := prefixOf(r); !ok {
			if ip, err := netip.ParseAddr(r); err != nil || !ip.Is4() {
				bad("apiServerAuthorizedIpRanges", "%q is not an IPv4 address or CIDR", r)
				continue
			}
		}
		if doc, ok := documentationRange(r); ok {
			bad("apiServerAuthorizedIpRanges", "%q is inside %s, an RFC 5737 documentation range no real host uses: put the public "+
				"egress addresses of the machines that run `pulumi up` and kubectl here, or leave the list empty", r, doc)
		}
	}

	// Image build: checked only when the stack builds the image (no prebuilt image set).
	if c.BuildsImage() {
		if err := errors.Join(c.ImageSource().Validate(), components.ValidateBuildTimeout(c.ImageBuildTimeoutSeconds)); err != nil {
			for _, e := range unwrapAll(err) {
				errs = append(errs, fmt.Errorf("%s:%w", Project, e))
			}
		}
	}

	// Target: AKS-only keys refused on Container Apps, and Container Apps' own limits.
	errs = append(errs, c.platformProblems()...)

	// Workload.
	if err := c.Consumer.Validate(); err != nil {
		for _, e := range unwrapAll(err) {
			errs = append(errs, fmt.Errorf("%s:%w", Project, e))
		}
	}

	return errs
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}

// prefixOf parses an IPv4 CIDR whose address is the network address.
func prefixOf(s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || !p.Addr().Is4() || p.Masked() != p {
		return netip.Prefix{}, false
	}
	return p, true
}

func contains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// documentationRanges are the RFC 5737 address blocks reserved for documentation (TEST-NET-1..3).
var documentationRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

// documentationRange returns the RFC 5737 block that the address or CIDR s overlaps.
func documentationRange(s string) (netip.Prefix, bool) {
	p, ok := prefixOf(s)
	if !ok {
		ip, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(ip, ip.BitLen())
	}
	for _, d := range documentationRanges {
		if d.Overlaps(p) {
			return d, true
		}
	}
	return netip.Prefix{}, false
}

// storageIPRuleProblem returns why Azure Storage would reject s as an IP rule, or "".
// Storage IP rules take public IPv4 addresses or CIDRs of /30 or larger.
func storageIPRuleProblem(s string) string {
	var addr netip.Addr
	if p, ok := prefixOf(s); ok {
		if p.Bits() > 30 {
			return "is a /31 or /32 range, which Azure Storage rejects: give the single address instead"
		}
		addr = p.Addr()
	} else if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
		addr = ip
	} else {
		return "is not a public IPv4 address or CIDR"
	}
	if addr.IsPrivate() || addr.IsLoopback() || addr.IsLinkLocalUnicast() || addr.IsUnspecified() {
		return "is not a public address: storage IP rules only apply to internet traffic (the AKS subnet is admitted by its service endpoint)"
	}
	return ""
}

// unjoin splits an errors.Join error into its parts (one error stays one).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
