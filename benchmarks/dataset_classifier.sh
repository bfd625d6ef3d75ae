# Sourced by the benchmark scripts: sets $classifier, the committed classifier every benchmark of DATASET ($1)
# defends, or stops the script with a clear error for an unknown dataset.
case $1 in
  mnist) classifier=zoo/mnist-a/classifier.pt ;;
  cifar10) classifier=zoo/cifar10-fast/classifier.pt ;;
  *) echo "DATASET must be mnist or cifar10, got $1" >&2; exit 2 ;;
esac
