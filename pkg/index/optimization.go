package index

import "fmt"

// Optimization is an opt-in change to the built index that soci knows by
// name (soci create --optimizations).
type Optimization string

// XAttrOptimization marks layers without extended attributes with
// IndexAnnotationDisableXAttrs, so the snapshotter skips xattr lookups there.
const XAttrOptimization Optimization = "xattr"

// Optimizations lists every known optimization.
func Optimizations() []Optimization { return []Optimization{XAttrOptimization} }

// ParseOptimization returns the optimization named s.
func ParseOptimization(s string) (Optimization, error) {
	for _, o := range Optimizations() {
		if string(o) == s {
			return o, nil
		}
	}
	return "", fmt.Errorf("optimization %q is not supported (supported: %v)", s, Optimizations())
}
