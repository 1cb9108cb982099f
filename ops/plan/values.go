package plan

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// Placeholders for values the plan cannot or must not show.
const (
	secretText  = "[secret]"
	unknownText = "[unknown]"
)

// plain converts a property value to plain Go values (string, float64, bool, []any,
// map[string]any, nil) for YAML, with secrets as [secret] and unknowns as [unknown]; unlike
// PropertyValue.Mappable it never reveals a secret.
func plain(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return secretText
	case v.IsComputed() || v.IsOutput():
		return unknownText
	case v.IsObject():
		out := map[string]any{}
		for k, e := range v.ObjectValue() {
			out[string(k)] = plain(e)
		}
		return out
	case v.IsArray():
		arr := v.ArrayValue()
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i] = plain(e)
		}
		return out
	case v.IsNull():
		return nil
	case v.IsAsset() || v.IsArchive() || v.IsResourceReference():
		return fmt.Sprint(v.V)
	default:
		return v.V
	}
}

// flatInputs returns a resource's inputs as path -> value, with the paths and value text of
// the inventory (pulumitest.Flatten), so every field the plan shows is a line of the inventory.
func flatInputs(r *pulumitest.Resource) (map[string]string, []string) {
	var lines []string
	pulumitest.Flatten("", resource.NewObjectProperty(r.Inputs), &lines)
	sort.Strings(lines)
	vals := map[string]string{}
	var paths []string
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		vals[k] = v
		paths = append(paths, k)
	}
	return vals, paths
}

// text formats a plain input value for the key settings ("" when absent).
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = text(e)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(x)
	}
}

// shortID shortens an ARM id to its last two segments ("…/Registry/acrx"); other values pass.
func shortID(v string) string {
	if !strings.HasPrefix(v, "/subscriptions/") {
		return v
	}
	parts := strings.Split(strings.TrimSuffix(v, "/"), "/")
	if len(parts) <= 4 {
		return v
	}
	return "…/" + strings.Join(parts[len(parts)-2:], "/")
}
