package infra

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/aks-edw/aks-edw/components"
)

// The targets the consumer can run on (config key `platform`).
const (
	// PlatformAKS is an AKS cluster with node autoprovisioning, the KEDA add-on and workload
	// identity (the default).
	PlatformAKS = "aks"
	// PlatformContainerApps is an Azure Container Apps environment: its built-in KEDA scales a
	// Container App or an event-driven job; no cluster.
	PlatformContainerApps = "containerapps"
)

// Platforms are the allowed values of `platform`.
var Platforms = []string{PlatformAKS, PlatformContainerApps}

// platformTag is the struct tag that marks a config key as meaning something only on one
// platform: `platform:"aks"`.
const platformTag = "platform"

// OnContainerApps reports whether the stack targets Azure Container Apps.
func (c Config) OnContainerApps() bool { return c.Platform == PlatformContainerApps }

// AKSOnlyKeys lists the config keys that mean something only on AKS (tagged platform:"aks"), in
// field order: the cluster, its network ranges, its monitoring, and the Kubernetes objects'
// names, placement and limits.
func AKSOnlyKeys() []string { return keysOnlyFor(PlatformAKS) }

// ContainerAppsOnlyKeys lists the config keys that mean something only on Container Apps.
func ContainerAppsOnlyKeys() []string { return keysOnlyFor(PlatformContainerApps) }

func keysOnlyFor(platform string) []string {
	var keys []string
	for _, f := range platformFields(DefaultConfig()) {
		if f.platform == platform {
			keys = append(keys, f.key)
		}
	}
	return keys
}

// platformField is one config field of a Config value that only one platform uses.
type platformField struct {
	key, platform string
	value         reflect.Value
}

// platformFields returns the tagged fields of a Config value and of its ConsumerSettings, in
// field order.
func platformFields(c Config) []platformField {
	var out []platformField
	for _, v := range []reflect.Value{reflect.ValueOf(c), reflect.ValueOf(c.Consumer)} {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if p := f.Tag.Get(platformTag); p != "" && jsonKey(f) != "" {
				out = append(out, platformField{jsonKey(f), p, v.Field(i)})
			}
		}
	}
	return out
}

// platformProblems refuses every key of the other platform set to anything but its default
// (Pulumi.yaml's defaults reach the program like any value, so "set" means "not the default"),
// and checks what Container Apps itself limits.
func (c Config) platformProblems() []error {
	if !slices.Contains(Platforms, c.Platform) {
		return []error{ConfigError{Key: "platform", Msg: fmt.Sprintf("%q is not one of %s", c.Platform, strings.Join(Platforms, ", "))}}
	}
	var errs []error
	want := platformFields(DefaultConfig())
	for i, f := range platformFields(c) {
		if f.platform != c.Platform && !reflect.DeepEqual(f.value.Interface(), want[i].value.Interface()) {
			errs = append(errs, ConfigError{Key: f.key, Msg: fmt.Sprintf(
				"means something only on %s and is set (to %s) with platform %s; remove it from the stack file (its default is %s)",
				platformNames[f.platform], shown(f.value), c.Platform, shown(want[i].value))})
		}
	}
	if c.Platform != PlatformContainerApps {
		return errs
	}
	// Container Apps names: caj-<prefix>-<suffix> is the longest (cae- for the environment is as long).
	if n := len("caj-") + len(c.Prefix) + 1 + SuffixLength; n > ContainerAppsNameMax {
		errs = append(errs, ConfigError{Key: "prefix", Msg: fmt.Sprintf(
			"%q is too long: the Container Apps job name caj-<prefix>-<suffix> would be %d characters, Azure allows %d (use at most %d characters)",
			c.Prefix, n, ContainerAppsNameMax, ContainerAppsNameMax-len("caj-")-1-SuffixLength)})
	}
	if vnet, ok := prefixOf(c.VnetAddressSpace); ok {
		switch subnet, ok := prefixOf(c.ContainerAppsSubnetPrefix); {
		case !ok:
			errs = append(errs, ConfigError{Key: "containerAppsSubnetPrefix", Msg: fmt.Sprintf("%q is not a valid IPv4 CIDR (e.g. 10.225.0.0/24)", c.ContainerAppsSubnetPrefix)})
		case !contains(vnet, subnet):
			errs = append(errs, ConfigError{Key: "containerAppsSubnetPrefix", Msg: fmt.Sprintf("%s is not inside vnetAddressSpace %s", subnet, vnet)})
		case subnet.Bits() > ContainerAppsSubnetMaxBits:
			errs = append(errs, ConfigError{Key: "containerAppsSubnetPrefix", Msg: fmt.Sprintf(
				"%s is too small: a Container Apps environment with workload profiles needs a /%d or larger", subnet, ContainerAppsSubnetMaxBits)})
		}
	}
	// docs/cloud-notes.md, "Azure Container Apps": nothing shows Container Apps' built-in scaler
	// reading the queue from the environment's subnet, and Microsoft.App is in neither of Azure
	// Storage's trusted-service lists, so no supported rule lets it through a closed firewall.
	// An app that can scale to zero, or an event-driven job (it starts only when the scaler sees
	// messages), would then never run: refused, not just warned (ContainerAppsFirewallWarning).
	if !c.StoragePublicNetworkAccess {
		switch {
		case c.Consumer.ScaleMode == components.ScaleModeScaledJob:
			errs = append(errs, ConfigError{Key: "storagePublicNetworkAccess", Msg: "is false with platform containerapps and scaleMode " +
				"ScaledJob: an event-driven job starts only when Container Apps' scaler reads the queue, which a closed storage " +
				"firewall most likely keeps out (it does not run in the environment's subnet, and no firewall rule admits it), so " +
				"no job would ever run. Set storagePublicNetworkAccess true (access stays Entra-only: shared keys are off), or use " +
				"scaleMode ScaledObject with minReplicas 1 or more, or platform aks"})
		case c.Consumer.MinReplicas == 0:
			errs = append(errs, ConfigError{Key: "storagePublicNetworkAccess", Msg: "is false with platform containerapps and minReplicas " +
				"0: the app would scale to zero and stay there, since Container Apps' scaler most likely cannot read the queue " +
				"through a closed storage firewall (it does not run in the environment's subnet, and no firewall rule admits it). " +
				"Set storagePublicNetworkAccess true (access stays Entra-only: shared keys are off), or minReplicas 1 or more (the " +
				"minimum then always runs and drains the queue, without scaling out), or platform aks"})
		}
	}
	if err := c.Consumer.ValidateForContainerApps(); err != nil {
		for _, e := range unwrapAll(err) {
			errs = append(errs, fmt.Errorf("%s:%w", Project, e))
		}
	}
	return errs
}

// ContainerAppsSubnetMaxBits is the smallest infrastructure subnet a workload-profiles
// environment takes: a /27.
const ContainerAppsSubnetMaxBits = 27

// platformNames are the platforms as the errors name them.
var platformNames = map[string]string{PlatformAKS: "AKS", PlatformContainerApps: "Container Apps"}

// shown renders a config value as the stack file would hold it.
func shown(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	case reflect.Slice, reflect.Map, reflect.Struct:
		b, err := json.Marshal(v.Interface())
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return string(b)
	default:
		return fmt.Sprint(v.Interface())
	}
}
