// Package opt fills a configuration's unset fields with their defaults.
package opt

// Default sets *v to d when *v is its type's zero value.
func Default[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}
