package components

import "fmt"

// arg is one required constructor argument: its field name and whether the caller set it.
type arg struct {
	name string
	set  bool
}

// missing returns "<name> is required" for every required argument that is not set, so a
// constructor reports all of them at once.
func missing(args ...arg) []error {
	var errs []error
	for _, a := range args {
		if !a.set {
			errs = append(errs, fmt.Errorf("%s is required", a.name))
		}
	}
	return errs
}
