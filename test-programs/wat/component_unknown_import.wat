;; A component importing an interface Wharf does not provide.
(component
  (import "acme:db/query@1.0.0" (instance
    (export "run" (func (param "q" string) (result u32)))))
)
