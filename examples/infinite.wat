;; infinite.wat: loops forever without touching WASI.
;; It never finishes on its own: the runner stops it by fuel (fuel_exhausted), by the
;; wall-clock deadline (timed_out) or by a cancel (cancelled), all through checks that
;; wasmtime compiles into every loop back-edge.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
