; cimc instruction stream, format 2
.stream "huge"
.schedule pipelined
.arrays 0
.global 0

.core 0 scratch=4294967295
halt
