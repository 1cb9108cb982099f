package pulumitest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Inventory renders every recorded resource (type, logical name, options, inputs) sorted by type
// and name: one unindented "type name" header line per resource, then an indented "# options"
// line when it has any, then its inputs as sorted "path=value" lines (see Flatten). The golden
// files testdata/inventory.<stack>.golden hold this text.
func Inventory(m *Mocks) string {
	rs := m.Resources()
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Type != rs[j].Type {
			return rs[i].Type < rs[j].Type
		}
		return rs[i].Name < rs[j].Name
	})
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.Type + " " + r.Name + "\n")
		if opts := Options(m, r); len(opts) > 0 {
			b.WriteString("  # " + strings.Join(opts, " ") + "\n")
		}
		var lines []string
		Flatten("", resource.NewObjectProperty(r.Inputs), &lines)
		sort.Strings(lines)
		for _, l := range lines {
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

// Options lists r's resource options as the inventory shows them: parent=, protect,
// deleteBeforeReplace, deletedWith=, provider= (explicit providers only), timeouts= (custom
// timeouts) and dependsOn=[...],
// each naming the other resource by its logical name.
func Options(m *Mocks, r *Resource) []string {
	var opts []string
	if r.Parent != "" && resource.URN(r.Parent).Type() != resource.RootStackType {
		opts = append(opts, "parent="+m.LogicalName(r.Parent))
	}
	if r.Protect {
		opts = append(opts, "protect")
	}
	if r.DeleteBeforeReplace {
		opts = append(opts, "deleteBeforeReplace")
	}
	if r.DeletedWith != "" {
		opts = append(opts, "deletedWith="+m.LogicalName(r.DeletedWith))
	}
	if r.Provider != "" && !strings.Contains(r.Provider, "::default") {
		opts = append(opts, "provider="+m.LogicalName(ProviderURN(r.Provider)))
	}
	if r.CreateTimeout != "" || r.UpdateTimeout != "" {
		opts = append(opts, "timeouts=create:"+r.CreateTimeout+",update:"+r.UpdateTimeout)
	}
	if deps := DependencyNames(m, r); len(deps) > 0 {
		opts = append(opts, "dependsOn=["+strings.Join(deps, ",")+"]")
	}
	return opts
}

// DependencyNames returns the sorted logical names of r's dependencies.
func DependencyNames(m *Mocks, r *Resource) []string {
	var deps []string
	for _, d := range r.Dependencies {
		deps = append(deps, m.LogicalName(d))
	}
	sort.Strings(deps)
	return deps
}

// LogicalName returns the logical name of the recorded resource with this URN, or the name at
// the end of the URN when no such resource was recorded.
func (m *Mocks) LogicalName(urn string) string {
	if r := m.ByURN(urn); r != nil {
		return r.Name
	}
	return URNName(urn)
}

// Flatten appends a property value as "path=value" lines to out (unsorted; callers sort):
// objects as dotted paths, arrays as [i], secrets as [secret], unknowns as [unknown], empty
// objects and arrays as {} and [].
func Flatten(prefix string, v resource.PropertyValue, out *[]string) {
	switch {
	case v.IsSecret():
		*out = append(*out, prefix+"=[secret]")
	case v.IsObject():
		obj := v.ObjectValue()
		keys := obj.StableKeys()
		if len(keys) == 0 && prefix != "" {
			*out = append(*out, prefix+"={}")
		}
		for _, k := range keys {
			p := string(k)
			if prefix != "" {
				p = prefix + "." + p
			}
			Flatten(p, obj[k], out)
		}
	case v.IsArray():
		arr := v.ArrayValue()
		if len(arr) == 0 {
			*out = append(*out, prefix+"=[]")
		}
		for i, e := range arr {
			Flatten(fmt.Sprintf("%s[%d]", prefix, i), e, out)
		}
	case v.IsNull():
		*out = append(*out, prefix+"=null")
	case v.IsComputed() || v.IsOutput():
		*out = append(*out, prefix+"=[unknown]")
	case v.IsString() && strings.ContainsAny(v.StringValue(), "\n\r"):
		// One line per value: a multi-line string (a PromQL expression) is written quoted.
		*out = append(*out, fmt.Sprintf("%s=%s", prefix, strconv.Quote(v.StringValue())))
	default:
		*out = append(*out, fmt.Sprintf("%s=%v", prefix, v.V))
	}
}

// LineDiff lists the lines of want missing from got ("- ") and the lines of got missing from
// want ("+ "), in order; enough to see what changed in an inventory.
func LineDiff(want, got string) string {
	w := map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	g := map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
