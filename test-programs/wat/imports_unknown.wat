;; A module importing a function no host provides.
(module
  (import "acme:db" "query" (func (param i32) (result i32)))
  (func (export "_start")))
