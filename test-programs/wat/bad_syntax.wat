(module
  (func (export "broken") (result i32)
    i32.const
