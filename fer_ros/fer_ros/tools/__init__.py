"""The offline tools, thin shells over the runtime core: fer-replay (replay a bag through the node's recognizer),
fer-make-bag and the bag files they read and write, fer-eval (score a model on a labelled dataset), fer-bench
and the perception benchmark, and the demo. They import nothing from `fer_ros.ros`: no ROS install is needed."""
