;; A module whose initial memory (128 MiB) is larger than a 64 MiB cap, so it fails
;; while instantiating, before any code runs.
(module
  (memory 2048)
  (func (export "_start")))
