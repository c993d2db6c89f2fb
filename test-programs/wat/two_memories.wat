;; Two linear memories that each grow by 40 MiB (640 pages). Each alone stays under a
;; 64 MiB cap; together they do not, which is what a total-memory cap must catch.
;; `_start` exits via `unreachable` when a grow fails (memory.grow returns -1).
(module
  (memory $a 1)
  (memory $b 1)
  (func (export "_start")
    (if (i32.eq (memory.grow $a (i32.const 640)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $b (i32.const 640)) (i32.const -1)) (then unreachable))))
