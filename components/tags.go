package components

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

// tagsInput converts plain tags to a Pulumi input (nil stays nil).
func tagsInput(tags map[string]string) pulumi.StringMapInput {
	if tags == nil {
		return nil
	}
	return pulumi.ToStringMap(tags)
}
