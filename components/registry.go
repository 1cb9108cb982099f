package components

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-azure-native-sdk/containerregistry/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// RegistryArgs configures the container registry.
type RegistryArgs struct {
	// ResourceGroupName is required.
	ResourceGroupName pulumi.StringInput
	// Location is required.
	Location pulumi.StringInput
	// Name is required: 5-50 letters and digits.
	Name pulumi.StringInput
	// Sku is optional: Basic (default), Standard or Premium.
	Sku string
	// Tags are optional.
	Tags map[string]string
	// Protect marks the registry protected against deletion; optional, default false.
	Protect bool
}

// Registry is an Azure Container Registry with the admin user and anonymous pull off.
type Registry struct {
	pulumi.ResourceState

	// Name is the registry's name.
	Name pulumi.StringOutput
	// ID is the registry's resource id (AcrPull scope).
	ID pulumi.StringOutput
	// LoginServer is the registry's host name (<name>.azurecr.io).
	LoginServer pulumi.StringOutput
}

// registryArgs is the pure builder of the registry.
func registryArgs(a *RegistryArgs) *containerregistry.RegistryArgs {
	sku := a.Sku
	if sku == "" {
		sku = string(containerregistry.SkuNameBasic)
	}
	return &containerregistry.RegistryArgs{
		ResourceGroupName:    a.ResourceGroupName,
		Location:             a.Location,
		RegistryName:         a.Name,
		Sku:                  &containerregistry.SkuArgs{Name: containerregistry.SkuName(sku)},
		AdminUserEnabled:     pulumi.Bool(false),
		AnonymousPullEnabled: pulumi.Bool(false),
		Tags:                 tagsInput(a.Tags),
	}
}

// NewRegistry creates the container registry.
func NewRegistry(ctx *pulumi.Context, name string, args *RegistryArgs, opts ...pulumi.ResourceOption) (*Registry, error) {
	if args == nil || args.ResourceGroupName == nil || args.Location == nil || args.Name == nil {
		return nil, fmt.Errorf("registry %q: %w", name, errors.New("ResourceGroupName, Location and Name are required"))
	}
	r := &Registry{}
	if err := ctx.RegisterComponentResource("aks-edw:azure:Registry", name, r, opts...); err != nil {
		return nil, fmt.Errorf("registering registry %q: %w", name, err)
	}
	reg, err := containerregistry.NewRegistry(ctx, name+"-acr", registryArgs(args), pulumi.Parent(r), pulumi.Protect(args.Protect))
	if err != nil {
		return nil, fmt.Errorf("creating container registry %q: %w", name, err)
	}
	r.Name = reg.Name
	r.ID = reg.ID().ToStringOutput()
	r.LoginServer = reg.LoginServer
	if err := ctx.RegisterResourceOutputs(r, pulumi.Map{"name": r.Name, "id": r.ID, "loginServer": r.LoginServer}); err != nil {
		return nil, fmt.Errorf("registering registry %q outputs: %w", name, err)
	}
	return r, nil
}
