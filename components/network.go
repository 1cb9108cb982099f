package components

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/network/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// NetworkArgs configures the stack's own virtual network and AKS subnet.
type NetworkArgs struct {
	// ResourceGroupName is required.
	ResourceGroupName pulumi.StringInput
	// Location is required.
	Location pulumi.StringInput
	// VnetName is required.
	VnetName pulumi.StringInput
	// SubnetName is required.
	SubnetName pulumi.StringInput
	// AddressSpace is required, an IPv4 CIDR.
	AddressSpace string
	// SubnetPrefix is required, an IPv4 CIDR inside AddressSpace.
	SubnetPrefix string
	// SubnetKey names the subnet child: name+"-"+SubnetKey+"-subnet" (optional; default "aks").
	SubnetKey string
	// Delegation delegates the subnet to a service, e.g. "Microsoft.App/environments" for a
	// Container Apps environment (optional; default none, as AKS's node subnet).
	Delegation string
	// Tags are optional.
	Tags map[string]string
}

// Network is a virtual network with one subnet for the consumer's platform: the AKS nodes, or a
// Container Apps environment (delegated to it). The subnet has the Microsoft.Storage service
// endpoint so the storage firewall can admit it by name.
type Network struct {
	pulumi.ResourceState

	// VnetID is the virtual network's resource id.
	VnetID pulumi.StringOutput
	// SubnetID is the subnet's resource id.
	SubnetID pulumi.StringOutput
	// Subnet is the subnet resource, for role assignments scoped to it.
	Subnet *network.Subnet
}

func (a *NetworkArgs) validate() error {
	var errs []error
	if a.ResourceGroupName == nil || a.Location == nil || a.VnetName == nil || a.SubnetName == nil {
		errs = append(errs, errors.New("ResourceGroupName, Location, VnetName and SubnetName are required"))
	}
	if a.AddressSpace == "" || a.SubnetPrefix == "" {
		errs = append(errs, errors.New("AddressSpace and SubnetPrefix are required"))
	}
	return errors.Join(errs...)
}

// virtualNetworkArgs is the pure builder of the virtual network. Subnets are not inline: the
// subnet is its own resource so it can be referenced (and azure-native keeps it on VNet updates).
func virtualNetworkArgs(a *NetworkArgs) *network.VirtualNetworkArgs {
	return &network.VirtualNetworkArgs{
		ResourceGroupName:  a.ResourceGroupName,
		Location:           a.Location,
		VirtualNetworkName: a.VnetName,
		AddressSpace: &network.AddressSpaceArgs{
			AddressPrefixes: pulumi.StringArray{pulumi.String(a.AddressSpace)},
		},
		Tags: tagsInput(a.Tags),
	}
}

// subnetArgs is the pure builder of the platform's subnet.
func subnetArgs(a *NetworkArgs, vnetName pulumi.StringInput) *network.SubnetArgs {
	args := &network.SubnetArgs{
		ResourceGroupName:  a.ResourceGroupName,
		VirtualNetworkName: vnetName,
		SubnetName:         a.SubnetName,
		AddressPrefix:      pulumi.String(a.SubnetPrefix),
		ServiceEndpoints: network.ServiceEndpointPropertiesFormatArray{
			&network.ServiceEndpointPropertiesFormatArgs{Service: pulumi.String("Microsoft.Storage")},
		},
	}
	if a.Delegation != "" {
		// Named as the portal names it: the service with dots for slashes.
		args.Delegations = network.DelegationArray{
			&network.DelegationArgs{Name: pulumi.String(strings.ReplaceAll(a.Delegation, "/", ".")), ServiceName: pulumi.String(a.Delegation)},
		}
	}
	return args
}

// NewNetwork creates the virtual network and the platform's subnet.
func NewNetwork(ctx *pulumi.Context, name string, args *NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	if args == nil {
		return nil, fmt.Errorf("network %q: args are required", name)
	}
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("network %q: %w", name, err)
	}
	n := &Network{}
	if err := ctx.RegisterComponentResource("aks-edw:azure:Network", name, n, opts...); err != nil {
		return nil, fmt.Errorf("registering network %q: %w", name, err)
	}
	vnet, err := network.NewVirtualNetwork(ctx, name+"-vnet", virtualNetworkArgs(args), pulumi.Parent(n))
	if err != nil {
		return nil, fmt.Errorf("creating virtual network %q: %w", name, err)
	}
	key := args.SubnetKey
	if key == "" {
		key = "aks"
	}
	subnet, err := network.NewSubnet(ctx, name+"-"+key+"-subnet", subnetArgs(args, vnet.Name), pulumi.Parent(n))
	if err != nil {
		return nil, fmt.Errorf("creating %s subnet %q: %w", key, name, err)
	}
	n.VnetID = vnet.ID().ToStringOutput()
	n.SubnetID = subnet.ID().ToStringOutput()
	n.Subnet = subnet
	if err := ctx.RegisterResourceOutputs(n, pulumi.Map{"vnetId": n.VnetID, "subnetId": n.SubnetID}); err != nil {
		return nil, fmt.Errorf("registering network %q outputs: %w", name, err)
	}
	return n, nil
}
